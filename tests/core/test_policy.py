"""Allowlists, input bounds, user isolation of forget, and what logs may contain."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain import Incoming, ThreadKey
from bot.errors import NotAllowed, TooLong
from bot.logs import JsonFormatter, MaskingFilter, mask
from bot.runtime import build_runtime
from tests.fakes.openai_server import FakeOpenAI, FakeOpenAIThread
from tests.support.fixtures import MakeRuntime, settings_for_test
from tests.support.store import record


async def test_allowlists_refuse_direct_mentions_once_and_stay_silent_otherwise(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(allowed_slack_teams="T1", allowed_slack_channels="C1", allowed_discord_channels="C7,C8")
    outside = ThreadKey("slack", "T2", "C1", "U1")
    with pytest.raises(NotAllowed) as err:
        await rt.core.handle(Incoming(outside, "hi", "m1", direct=True))
    assert err.value.user_message == "Sorry, I'm not enabled here."
    assert await rt.core.handle(Incoming(outside, "hi", "m2", direct=False)) is None
    assert await rt.core.handle(Incoming(ThreadKey("slack", "T1", "C1", "U1"), "hi", "m3")) is not None
    assert await rt.core.handle(Incoming(ThreadKey("discord", "G1", "C7", "U1"), "hi", "m4")) is not None
    assert await rt.core.handle(Incoming(ThreadKey("discord", "G1", "C9", "U1"), "hi", "m5", direct=False)) is None
    assert await rt.core.handle(Incoming(ThreadKey("discord", "dm", "D1", "U1"), "hi", "m6", is_dm=True)) is not None
    assert await rt.core.handle(Incoming(ThreadKey("slack", "T1", "D1", "U1"), "hi", "m7", is_dm=True)) is not None
    assert await rt.core.handle(Incoming(ThreadKey("slack", "T1", "C2", "U1"), "hi", "m8", direct=False)) is None
    assert fake_openai.count("POST", "/v1/responses") == 4


async def test_input_bounds(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime(max_input_chars=50)
    key = ThreadKey("discord", "G1", "C1", "U1")
    assert await rt.core.handle(Incoming(key, "   \n\t  ", "m1")) is None
    assert await rt.core.handle(Incoming(key, "\u200b\u202e", "m2")) is None
    with pytest.raises(TooLong) as err:
        await rt.core.handle(Incoming(key, "x" * 51, "m3"))
    assert "51" in err.value.user_message and "50" in err.value.user_message
    assert fake_openai.calls == []
    answer = await rt.core.handle(Incoming(key, "he\x00llo\x1b wor\u200bld\r\n", "m4"))
    assert answer is not None and answer.text == "echo: hello world"


def test_mask_hides_tokens() -> None:
    line = "token xoxb-1234567890-abcdefghij and sk-proj-abcdefghijklmnop and Bearer abcdefghijklmnopqrstu"
    masked = mask(line)
    for secret in ("1234567890-abcdefghij", "abcdefghijklmnop", "abcdefghijklmnopqrstu"):
        assert secret not in masked


def test_json_logs_are_structured_and_masked() -> None:
    args = ("xoxb-123456789-secret",)
    record = logging.LogRecord("threadkeeper.core", logging.INFO, __file__, 1, "using %s", args, None)
    record.key = "5ef91555d995f64f"
    MaskingFilter().filter(record)
    out = json.loads(JsonFormatter().format(record))
    assert out["level"] == "INFO" and out["logger"] == "threadkeeper.core" and out["key"] == "5ef91555d995f64f"
    assert "secret" not in out["msg"]


async def test_core_logs_never_carry_user_ids(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    rt = await make_runtime()
    key = ThreadKey("slack", "TSECRETTEAM", "CSECRETCHAN", "USECRETUSER")
    with caplog.at_level(logging.DEBUG):
        first = await rt.core.handle(Incoming(key, "hi", "m1"))
        assert first is not None
        fake_openai.delete_conversation(first.thread_id)
        await rt.core.handle(Incoming(key, "again", "m2"))
        await rt.core.forget(key)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "recovered" in text and "forgot" in text
    assert "SECRET" not in text


ids = st.sampled_from(["a", "b", "x:y", "{t}", "50%"])
keys_st = st.lists(
    st.builds(ThreadKey, st.sampled_from(["slack", "discord"]), ids, ids, ids), min_size=1, max_size=12, unique=True
)


@pytest.fixture(scope="module")
def threaded_fake() -> object:
    with FakeOpenAIThread() as fake:
        yield fake


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=keys_st, pick=st.integers(0, 100), everything=st.booleans())
def test_forget_never_touches_another_users_threads(
    keys: list[ThreadKey], pick: int, everything: bool, redis_url: str, threaded_fake: FakeOpenAIThread
) -> None:
    victim = keys[pick % len(keys)]
    prefix = f"tkp{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        rt = build_runtime(settings_for_test(redis_url, prefix, threaded_fake.base_url))
        try:
            for n, key in enumerate(keys):
                await record(rt.store, key, f"conv_missing{n}")
            if everything:
                await rt.core.forget_user(victim.platform, victim.workspace, victim.user)
            else:
                await rt.core.forget(victim)
            for key in keys:
                same_user = (key.platform, key.workspace, key.user) == (victim.platform, victim.workspace, victim.user)
                should_go = key == victim or (everything and same_user)
                assert (await rt.store.get_thread(key) is None) == should_go, key
            await rt.redis.delete(*[k async for k in rt.redis.scan_iter(match=f"{prefix}:*")])
        finally:
            await rt.close()

    asyncio.run(scenario())
