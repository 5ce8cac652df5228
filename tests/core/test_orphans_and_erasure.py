"""No orphaned provider conversation, no model that is wrong costing calls, nothing that names an erased user."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest

from bot.domain import Incoming, ThreadKey
from bot.errors import Misconfigured, Unavailable
from bot.ops import admin, janitor
from bot.runtime import Runtime
from tests.fakes.openai_server import FakeOpenAI
from tests.support.erasure import leftovers
from tests.support.fixtures import MakeRuntime, start_redis_server
from tests.support.store import owed
from tests.support.threads import age, start

USER = "Uerasure42"
CHANNEL = "Cerasure77"
KEY = ThreadKey("slack", "T1", CHANNEL, USER)


def msg(text: str, mid: str, key: ThreadKey = KEY) -> Incoming:
    return Incoming(key, text, mid)


# -- unknown model -------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["openai404", "compat400"])
async def test_unknown_model_creates_nothing_and_stops_asking(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake_openai.unknown_model_shape = shape  # type: ignore[assignment]
    rt = await make_runtime(openai_model="gpt-nonexistent", openai_max_retries=0)
    with caplog.at_level(logging.ERROR), pytest.raises(Misconfigured) as err:
        await rt.core.handle(msg("hi", "m1"))
    assert err.value.user_message == Misconfigured.user_message
    assert any("OPENAI_MODEL" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert fake_openai.created_count == 0
    assert await rt.store.get_thread(KEY) is None
    calls = len(fake_openai.calls)
    with pytest.raises(Misconfigured):
        await rt.core.handle(msg("again", "m2"))
    assert len(fake_openai.calls) == calls  # no assistant call while the error persists


async def test_a_known_model_is_checked_once_per_process(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime()
    await start(rt, KEY, "m1")
    await start(rt, ThreadKey("slack", "T1", "C2", USER), "m2")
    assert fake_openai.count("GET", "/v1/models") == 1


# -- orphans -------------------------------------------------------------------------------------------
async def test_redis_killed_between_create_and_save_deletes_the_new_conversation(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    proc, url = start_redis_server()
    try:
        rt = await make_runtime(redis_url=url)
        await rt.core.handle(msg("warm up the model check", "m0", ThreadKey("slack", "T1", "C0", USER)))
        fake_openai.hang_on_create(0.5)
        before = set(fake_openai.conversations)
        answering = asyncio.create_task(rt.core.handle(msg("hi", "m1")))
        for _ in range(500):  # until the create reached the fake (it answers only 0.5 s later)
            if set(fake_openai.conversations) != before:
                break
            await asyncio.sleep(0.01)
        proc.kill()
        proc.wait(5)
        with pytest.raises(Unavailable):
            await answering
        made = set(fake_openai.conversations) - before
        assert len(made) == 1
        assert all(fake_openai.conversations[c].deleted for c in made)
        assert not rt.core.unrecorded.pending
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_a_create_that_times_out_is_never_retried(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    rt = await make_runtime(openai_timeout=0.3, openai_max_retries=2)
    await rt.core.handle(msg("warm up", "m0", ThreadKey("slack", "T1", "C0", USER)))
    made = fake_openai.created_count
    fake_openai.hang_on_create(1.0)
    with caplog.at_level(logging.WARNING), pytest.raises(Unavailable):
        await rt.core.handle(msg("hi", "m1"))
    assert fake_openai.created_count == made + 1  # at most one unrecorded conversation per timed-out create
    assert any("tk_request=" in r.getMessage() for r in caplog.records)
    fresh = [c for c in fake_openai.conversations.values() if c.metadata.get("tk_request")]
    assert fresh  # the tag the log names is on the conversation, so an operator can find it


# -- erasure -------------------------------------------------------------------------------------------


async def used(rt: Runtime) -> list[str]:
    """Two conversations of the user (one recovered after its first vanished), with limits on."""
    conv = await start(rt, KEY, "m1")
    other = ThreadKey("slack", "T1", "Cother99", USER)
    await start(rt, other, "m2")
    return [conv, (await rt.store.get_thread(other)).thread_id]  # type: ignore[union-attr]


async def test_forget_leaves_nothing_that_names_the_user(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime(rate_limit="100/1m", user_daily_tokens=100000)
    convs = await used(rt)
    fake_openai.delete_conversation(convs[0])
    await rt.core.handle(msg("after it vanished", "m3"))  # recovered: the gone thread is not queued
    assert convs[0] not in await owed(rt.store)
    live = (await rt.store.get_thread(KEY)).thread_id  # type: ignore[union-attr]
    assert await leftovers(rt, [USER, live]) != []  # the scan sees them while they are kept
    await rt.core.forget_user("slack", "T1", USER)
    assert await leftovers(rt, [USER, CHANNEL, "Cother99", live, *convs]) == []
    # The budget survives the erasure, under a name that says nothing about whose it is.
    assert await rt.store.tokens_today(KEY) > 0


async def test_a_failed_remote_deletion_stays_owed_without_naming_the_user(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(openai_max_retries=0)
    conv = await start(rt, KEY, "m1")
    fake_openai.fail_next(500, path_prefix="/v1/conversations")
    result = await rt.core.forget(KEY)
    assert result.remote_pending == 1 and conv in await owed(rt.store)
    assert await leftovers(rt, [USER, CHANNEL]) == []
    await janitor.run_pass(rt)
    assert fake_openai.conversations[conv].deleted and await owed(rt.store) == {}
    assert await leftovers(rt, [USER, CHANNEL, conv]) == []


async def test_janitor_and_purge_leave_nothing_that_names_the_user(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(thread_idle_ttl="1h")
    convs = await used(rt)
    await age(rt, KEY, 7200)
    await janitor.run_pass(rt)
    code = await admin.main(rt, ["purge", "--all", "--yes"], out=io.StringIO(), err=io.StringIO())
    assert code == 0
    assert await leftovers(rt, [USER, CHANNEL, "Cother99", *convs]) == []


async def test_doctor_lists_what_the_server_refused(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    from bot.ops import doctor

    fake_openai.refuse_param("truncation", status=400)
    rt = await make_runtime(openai_max_retries=0)
    assert await rt.core.handle(msg("hi", "m1")) is not None
    out = io.StringIO()
    await doctor.main(rt.settings, out=out)
    line = next(x for x in out.getvalue().splitlines() if x.startswith("PASS openai"))
    assert "it refused truncation (the bot no longer sends them)" in line
