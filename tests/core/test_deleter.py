"""A forget interrupted at every step: either everything is still there, or a tombstone the janitor completes.

The forgetting process talks to Redis through a proxy that freezes after N commands; the test sweeps N
over every Redis command a forget sends, cancels the frozen forget (the process is gone), lets its lock
lapse, and checks the state another process sees. Never kept turns without a tombstone.
"""

from __future__ import annotations

import asyncio

from bot.domain import ThreadKey
from bot.ops import janitor
from bot.runtime import Runtime
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import MakeRuntime
from tests.support.redis_proxy import FreezingRedisProxy
from tests.support.store import owed
from tests.support.threads import start

KEY = ThreadKey("slack", "T1", "D1", "U1")
LOCK_TTL = 0.3


async def state(rt: Runtime, fake: FakeOpenAI, conv: str) -> dict[str, bool]:
    return {
        "mapping": await rt.store.get_thread(KEY) is not None,
        "turns": bool(await rt.store.turns(KEY)),
        "remote": not fake.conversations[conv].deleted,
        "tombstone": conv in await owed(rt.store),
    }


async def lock_lapsed(rt: Runtime) -> None:
    async with rt.store.lock(KEY, wait=10 * LOCK_TTL):
        pass


async def interrupted_forget(make_runtime: MakeRuntime, redis_url: str, limit: int) -> bool:
    """Run a forget that freezes after ``limit`` Redis commands and is then cancelled. True if it froze."""
    async with FreezingRedisProxy(redis_url, limit) as proxy:
        doomed = await make_runtime(redis_url=proxy.url, lock_ttl=LOCK_TTL, redis_max_connections=4)
        forget = asyncio.create_task(doomed.core.forget(KEY))
        frozen = asyncio.create_task(proxy.frozen.wait())
        await asyncio.wait({forget, frozen}, return_when=asyncio.FIRST_COMPLETED)
        frozen.cancel()
        if forget.done():
            forget.result()
            return False
        while not forget.done():  # a killed process: cancel its shielded clean-up too
            forget.cancel()
            await asyncio.wait({forget}, timeout=0.05)
        return True


async def test_forget_interrupted_at_every_step_is_completed_by_the_janitor(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, redis_url: str
) -> None:
    seen_states: set[tuple[bool, ...]] = set()
    limit = 0
    while True:
        rt = await make_runtime(lock_ttl=LOCK_TTL)
        await rt.core.forget(KEY)
        conv = await start(rt, KEY, f"m{limit}")
        if not await interrupted_forget(make_runtime, redis_url, limit):
            break  # the whole forget fits in `limit` commands: every step was interrupted once
        await lock_lapsed(rt)
        now = await state(rt, fake_openai, conv)
        seen_states.add(tuple(now.values()))
        everything = now == {"mapping": True, "turns": True, "remote": True, "tombstone": False}
        done = not any(now.values())  # only the final unlock was cut off
        assert everything or done or now["tombstone"], (limit, now)
        if now["tombstone"]:
            await janitor.run_pass(rt)
            assert await state(rt, fake_openai, conv) == {
                "mapping": False, "turns": False, "remote": False, "tombstone": False,
            }, limit
        limit += 1
    assert limit > 3
    # The sweep met the states in between: tombstone only, remote gone with turns kept, all kept.
    assert (True, True, True, False) in seen_states
    assert (True, True, False, True) in seen_states


async def test_forget_cancelled_while_the_provider_deletes(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime(lock_ttl=LOCK_TTL)
    conv = await start(rt, KEY, "m1")
    fake_openai.latency = 30
    forget = asyncio.create_task(rt.core.forget(KEY))
    for _ in range(1000):  # until the deletion reached the provider (which now takes 30 s to answer)
        if any(path.startswith(f"/v1/conversations/{conv}") for _, path in fake_openai.calls):
            break
        await asyncio.sleep(0.01)
    forget.cancel()
    await asyncio.gather(forget, return_exceptions=True)
    fake_openai.latency = 0
    now = await state(rt, fake_openai, conv)
    assert now["tombstone"] and now["turns"], now
    await janitor.run_pass(rt)
    assert await state(rt, fake_openai, conv) == {"mapping": False, "turns": False, "remote": False,
                                                   "tombstone": False}
