"""The janitor end to end: real Redis, the real openai client, the loopback fake OpenAI."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable

import pytest

from bot.domain import Incoming, ThreadKey
from bot.ops import janitor
from bot.runtime import Runtime
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import MakeRuntime
from tests.support.paths import REPO_ROOT
from tests.support.store import owed
from tests.support.threads import age, start

ROOT = REPO_ROOT
IDLE = [ThreadKey("slack", "T1", f"C{i}", "U1") for i in range(4)]
ACTIVE = ThreadKey("discord", "G1", "C9", "U7")


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = 15.0) -> None:
    """Poll a state (not a clock) until it holds; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not await check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.005)


def conversation_delete_sent(fake: FakeOpenAI) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(m == "DELETE" and p.count("/") == 3 for m, p in fake.calls)

    return check


def conv_deletes(fake: FakeOpenAI, conv_id: str) -> int:
    """DELETE /v1/conversations/<id> calls (item deletions not counted)."""
    return sum(1 for m, p in fake.calls if m == "DELETE" and p == f"/v1/conversations/{conv_id}")


async def assert_no_local_trace(rt: Runtime, key: ThreadKey) -> None:
    keys = rt.store.keys
    assert await rt.store.get_thread(key) is None
    assert await rt.store.turns(key) == []
    assert await rt.redis.zscore(keys.index, key.id) is None
    assert not await rt.redis.hexists(keys.index_ids, key.id)
    assert not await rt.redis.sismember(keys.user(key.user_id), key.id)


async def idle_world(rt: Runtime, idle: list[ThreadKey] = IDLE) -> tuple[dict[ThreadKey, str], str]:
    """Threads for ``idle`` aged past the 1h idle TTL, and one active thread."""
    convs = {key: await start(rt, key, f"m{i}") for i, key in enumerate(idle)}
    for key in idle:
        await age(rt, key, 7200)
    return convs, await start(rt, ACTIVE, "m-active")


async def test_idle_threads_deleted_remotely_and_locally_active_kept(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    rt = await make_runtime(thread_idle_ttl="1h")
    convs, active_conv = await idle_world(rt)
    # One mapping whose Redis TTL already lapsed: only the durable index still knows its thread.
    lapsed = IDLE[0]
    await rt.redis.delete(rt.store.keys.thread(lapsed), rt.store.keys.turns(lapsed))

    with caplog.at_level(logging.INFO, logger="threadkeeper.janitor"):
        result = await janitor.run_pass(rt)

    assert (result.ran, result.idle, result.deleted, result.queued, result.busy) == (True, 4, 4, 0, 0)
    for key, conv in convs.items():
        assert fake_openai.conversations[conv].deleted
        assert conv_deletes(fake_openai, conv) == 1
        await assert_no_local_trace(rt, key)
    assert fake_openai.orphan_items == set()
    assert await owed(rt.store) == {}
    assert not fake_openai.conversations[active_conv].deleted
    record = await rt.store.get_thread(ACTIVE)
    assert record is not None and record.thread_id == active_conv
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("janitor pass")]
    assert len(lines) == 1 and "4 of 4 idle threads deleted" in lines[0]

    fake_openai.reset_calls()
    again = await janitor.run_pass(rt)
    assert (again.idle, again.deleted) == (0, 0)
    assert fake_openai.calls == []
    answer = await rt.core.handle(Incoming(IDLE[1], "back again", message_id="m-new"))
    assert answer is not None and answer.thread_id not in convs.values()


async def test_thread_answering_right_now_is_skipped(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime(thread_idle_ttl="1h")
    convs, _ = await idle_world(rt, IDLE[:2])
    busy = IDLE[0]
    held = await rt.store.lock(busy).acquire()
    result = await janitor.run_pass(rt)
    assert (result.deleted, result.busy) == (1, 1)
    assert not fake_openai.conversations[convs[busy]].deleted
    assert await rt.store.get_thread(busy) is not None
    await held.release()
    assert (await janitor.run_pass(rt)).deleted == 1
    assert fake_openai.conversations[convs[busy]].deleted


async def test_two_janitors_together_delete_each_thread_once(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    a = await make_runtime(thread_idle_ttl="1h")
    b = await make_runtime(thread_idle_ttl="1h")
    convs, _ = await idle_world(a)
    forgetter = await make_runtime(openai_max_retries=0)
    failed_forget = await start(forgetter, ThreadKey("slack", "T1", "C5", "U2"), "m-f")
    fake_openai.fail_next(500, path_prefix=f"/v1/conversations/{failed_forget}")
    assert (await forgetter.core.forget(ThreadKey("slack", "T1", "C5", "U2"))).remote_pending == 1
    fake_openai.reset_calls()
    fake_openai.latency = 0.02

    results = await asyncio.gather(janitor.run_pass(a), janitor.run_pass(b), janitor.run_pass(b))

    assert sum(r.deleted for r in results) == len(convs)
    assert sum(r.completed for r in results) == 1
    for conv in [*convs.values(), failed_forget]:
        assert fake_openai.conversations[conv].deleted
        assert conv_deletes(fake_openai, conv) == 1
    assert sum(1 for m, p in fake_openai.calls if m == "DELETE" and "/items/" not in p) == len(convs) + 1
    assert await a.redis.exists(a.store.keys.janitor_lock()) == 0


async def test_killed_janitor_then_rerun_loses_and_leaks_nothing(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(thread_idle_ttl="1h")
    convs, active_conv = await idle_world(rt)
    fake_openai.reset_calls()
    fake_openai.latency = 0.05
    task = asyncio.create_task(janitor.run_pass(rt))
    await eventually(conversation_delete_sent(fake_openai), "a conversation deletion")
    task.cancel()  # killed while its first conversation deletion is on the wire
    with pytest.raises(asyncio.CancelledError):
        await task

    tombstones = await owed(rt.store)
    for key, conv in convs.items():
        known = await rt.redis.hexists(rt.store.keys.index_ids, key.id)
        assert fake_openai.conversations[conv].deleted or known or conv in tombstones, conv
    assert len(fake_openai.active_conversations) >= len(convs)  # most of the work was left undone

    fake_openai.latency = 0
    await janitor.run_pass(rt)
    for key, conv in convs.items():
        assert fake_openai.conversations[conv].deleted
        assert 1 <= conv_deletes(fake_openai, conv) <= 2
        await assert_no_local_trace(rt, key)
    assert sum(conv_deletes(fake_openai, c) for c in convs.values()) <= len(convs) + 1
    assert fake_openai.orphan_items == set()
    assert await owed(rt.store) == {}
    assert [k for k, _ in await rt.store.index_entries()] == [ACTIVE]
    assert not fake_openai.conversations[active_conv].deleted


async def test_janitor_process_killed_outright_then_rerun(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, redis_url: str, prefix: str
) -> None:
    """SIGKILL of ``python -m bot janitor`` mid-pass: its locks lapse and the next pass finishes the job."""
    rt = await make_runtime(thread_idle_ttl="1h", lock_ttl=0.5)
    convs, active_conv = await idle_world(rt)
    fake_openai.reset_calls()
    fake_openai.latency = 0.05
    proc = await spawn_janitor(redis_url, prefix, fake_openai.base_url, LOCK_TTL="0.5s")
    try:
        await eventually(conversation_delete_sent(fake_openai), "a conversation deletion")
        assert proc.returncode is None
    finally:
        proc.kill()
        await proc.wait()

    fake_openai.latency = 0
    results: list[janitor.PassResult] = []

    async def ran() -> bool:  # the dead janitor's lease lapses after 2 x LOCK_TTL
        results.append(await janitor.run_pass(rt))
        return results[-1].ran

    await eventually(ran, "a pass after the dead janitor's lease lapsed")
    assert results[-1].busy == 0
    for key, conv in convs.items():
        assert fake_openai.conversations[conv].deleted
        await assert_no_local_trace(rt, key)
    assert fake_openai.orphan_items == set()
    assert await owed(rt.store) == {}
    assert not fake_openai.conversations[active_conv].deleted


async def spawn_janitor(redis_url: str, prefix: str, base_url: str, **env: str) -> asyncio.subprocess.Process:
    environ = {
        **os.environ,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "OPENAI_API_KEY": "test",
        "OPENAI_BASE_URL": base_url,
        "OPENAI_MODEL": "gpt-test",
        "OPENAI_MAX_RETRIES": "0",
        "THREAD_IDLE_TTL": "1h",
        "LOG_LEVEL": "INFO",
        **env,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "janitor", cwd=ROOT, env=environ, stderr=asyncio.subprocess.PIPE
    )


async def test_janitor_process_stops_cleanly_on_sigterm(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, redis_url: str, prefix: str
) -> None:
    rt = await make_runtime(thread_idle_ttl="1h")
    convs, _ = await idle_world(rt, IDLE[:1])
    proc = await spawn_janitor(redis_url, prefix, fake_openai.base_url, JANITOR_INTERVAL="1h")
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            while not any("janitor pass:" in line for line in lines):
                lines.append((await proc.stderr.readline()).decode())
                assert lines[-1], "janitor exited early:\n" + "".join(lines)
            proc.send_signal(signal.SIGTERM)
            lines += (await proc.stderr.read()).decode().splitlines()
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert any("1 of 1 idle threads deleted" in line for line in lines)
    assert any("janitor stopped" in line for line in lines)
    assert all(fake_openai.conversations[c].deleted for c in convs.values())


async def test_queued_deletion_of_a_failed_forget_is_completed(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(openai_max_retries=0)
    conv = await start(rt, IDLE[0], "m1")
    fake_openai.fail_next(500, path_prefix="/v1/conversations")
    assert (await rt.core.forget(IDLE[0])).remote_pending == 1
    assert not fake_openai.conversations[conv].deleted

    result = await janitor.run_pass(rt)
    assert (result.retried, result.completed) == (1, 1)
    assert fake_openai.conversations[conv].deleted and fake_openai.orphan_items == set()
    assert await owed(rt.store) == {}


async def test_queued_deletion_goes_to_the_backend_that_made_the_thread(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    conversations = await make_runtime(openai_max_retries=0)
    conv = await start(conversations, IDLE[0], "m1")
    fake_openai.fail_next(503, path_prefix="/v1/conversations")
    await conversations.core.forget(IDLE[0])
    chat = await make_runtime(assistant_backend="chat")
    result = await janitor.run_pass(chat)
    assert result.completed == 1
    assert fake_openai.conversations[conv].deleted


async def test_interrupted_forget_is_finished_mapping_and_all(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    """A forget that died after queueing its deletion: the janitor deletes remote and local."""
    rt = await make_runtime()
    conv = await start(rt, IDLE[0], "m1")
    await rt.store.add_tombstone(conv, "conversations", IDLE[0])
    result = await janitor.run_pass(rt)
    assert result.completed == 1
    assert fake_openai.conversations[conv].deleted
    await assert_no_local_trace(rt, IDLE[0])


async def test_remote_failure_keeps_the_deletion_queued(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime(thread_idle_ttl="1h", openai_max_retries=0)
    convs, _ = await idle_world(rt, IDLE[:1])
    (conv,) = convs.values()
    fake_openai.fail_next(500, path_prefix="/v1/conversations/")
    result = await janitor.run_pass(rt)
    assert (result.deleted, result.queued) == (0, 1)
    assert await owed(rt.store) == {conv: "conversations"}
    await assert_no_local_trace(rt, IDLE[0])
    assert (await janitor.run_pass(rt)).completed == 1
    assert fake_openai.conversations[conv].deleted and await owed(rt.store) == {}


async def test_lease_of_a_dead_janitor_lapses(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime(thread_idle_ttl="1h", lock_ttl=0.3)
    convs, _ = await idle_world(rt, IDLE[:1])
    await rt.redis.set(rt.store.keys.janitor_lock(), "dead-janitor", px=300)
    assert not (await janitor.run_pass(rt)).ran
    assert fake_openai.count("DELETE", "/v1/") == 0
    results: list[janitor.PassResult] = []

    async def ran() -> bool:
        results.append(await janitor.run_pass(rt))
        return results[-1].ran

    await eventually(ran, "a pass after the stale lease lapsed")
    assert results[-1].deleted == 1 and all(fake_openai.conversations[c].deleted for c in convs.values())


async def test_background_task_runs_on_its_interval_and_only_when_set(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    off = await make_runtime(thread_idle_ttl="1h")
    convs, _ = await idle_world(off, IDLE[:1])
    await asyncio.wait_for(janitor.janitor_task(off), 1)  # JANITOR_INTERVAL unset: returns at once
    assert fake_openai.count("DELETE", "/v1/") == 0
    on = await make_runtime(thread_idle_ttl="1h", janitor_interval="1h")
    task = asyncio.create_task(janitor.janitor_task(on))

    async def pass_done() -> bool:
        assert not task.done()
        deleted = all(fake_openai.conversations[c].deleted for c in convs.values())
        return deleted and not await on.redis.exists(on.store.keys.janitor_lock())

    try:
        # Done once the thread is deleted and the pass gave its lease back; then it sleeps an hour.
        await eventually(pass_done, "a background pass")
        assert [k for k, _ in await on.store.index_entries()] == [ACTIVE]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
