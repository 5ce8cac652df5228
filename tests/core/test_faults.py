"""Redis going away mid-traffic: no crash, a clear sentence meanwhile, normal answers after."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from bot.domain import Incoming, ThreadKey
from bot.errors import BotError, Unavailable
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import MakeRuntime, free_port, start_redis_server


@pytest.fixture
def own_redis() -> Iterator[tuple[int, list[object]]]:
    port = free_port()
    proc, _ = start_redis_server(port)
    holder: list[object] = [proc]
    yield port, holder
    for p in holder:
        p.terminate()  # type: ignore[attr-defined]
        p.wait(5)  # type: ignore[attr-defined]


async def test_redis_restart_mid_traffic(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, own_redis: tuple[int, list[object]]
) -> None:
    port, holder = own_redis
    rt = await make_runtime(redis_url=f"redis://127.0.0.1:{port}/0")
    fake_openai.latency = 0.05
    outcomes: list[str] = []
    restored = asyncio.Event()

    async def user(n: int) -> None:
        key = ThreadKey("discord", "G1", "C1", f"U{n}")
        after = 0
        for i in range(400):
            try:
                answer = await rt.core.handle(Incoming(key, f"msg {i}", f"{n}-{i}"))
                outcomes.append("answer" if answer else "none")
            except Unavailable as exc:
                assert exc.user_message.startswith("The assistant is temporarily unavailable")
                outcomes.append("unavailable")
            except BotError as exc:  # pragma: no cover - a wrong kind of error fails below
                outcomes.append(type(exc).__name__)
            if restored.is_set():
                after += 1
                if after >= 3:
                    return
            await asyncio.sleep(0.03)

    async def outage() -> None:
        await asyncio.sleep(0.2)
        proc = holder.pop()
        proc.terminate()  # type: ignore[attr-defined]
        proc.wait(5)  # type: ignore[attr-defined]
        # Longer than the client's own reconnect retries, so some messages must see the outage.
        await asyncio.sleep(1.5)
        restarted, _ = start_redis_server(port)
        holder.append(restarted)
        restored.set()

    await asyncio.gather(*(user(n) for n in range(4)), outage())
    assert set(outcomes) <= {"answer", "unavailable"}
    assert "unavailable" in outcomes and outcomes.count("answer") > 4
    answer = await rt.core.handle(Incoming(ThreadKey("discord", "G1", "C1", "U9"), "after", "after-1"))
    assert answer is not None and answer.text == "echo: after"
    assert redis.Redis(port=port).ping()
