"""The message path end to end: real Redis, the real openai client, the loopback fake."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bench.redis_count import RoundTrips, count_async
from bot.assistants.errors import TIMEOUT_SENTENCE
from bot.domain import Gathered, Incoming, ThreadKey
from bot.errors import Misconfigured, Unavailable
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import MakeRuntime
from tests.support.items import items_text
from tests.support.store import claim_like_a_dead_worker, owed

KEY = ThreadKey("slack", "T1", "C1", "U1")


def msg(text: str, mid: str, key: ThreadKey = KEY) -> Incoming:
    return Incoming(key, text, message_id=mid)




async def test_first_message_creates_thread_then_one_call_per_message(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime()
    first = await rt.core.handle(msg("hello", "m1"))
    assert first is not None and first.text == "echo: hello"
    assert fake_openai.count("POST", "/v1/conversations") == 1
    conv_id = first.thread_id
    assert conv_id.startswith("conv_")
    meta = fake_openai.conversations[conv_id].metadata
    assert meta["platform"] == "slack" and "U1" not in meta["user"]

    fake_openai.reset_calls()
    second = await rt.core.handle(msg("again", "m2"))
    assert second is not None and second.text == "echo: again" and second.thread_id == conv_id
    assert fake_openai.calls == [("POST", "/v1/responses")]
    body = fake_openai.requests[0].json or {}
    assert body["conversation"] == conv_id
    assert body["instructions"] == rt.settings.assistant_instructions
    assert body["model"] == "gpt-test"


async def test_an_answer_in_a_platform_thread_costs_two_round_trips(make_runtime: MakeRuntime) -> None:
    """Claim and lock, then the turn with its context mark and the joined platform thread, in one script."""
    rt = await make_runtime()
    place = "slack:T1:C1/1700000000.000100"
    marks: list[str] = []

    def placed(text: str, mid: str, mark: str) -> Incoming:
        async def gather(since: str) -> Gathered:
            marks.append(since)
            return Gathered(mark=mark)

        return Incoming(KEY, text, message_id=mid, place=place, gather=gather)

    await rt.core.handle(placed("hello", "m1", "1700000000.000100"))
    tally = RoundTrips()
    count_async(rt.store.redis, tally)
    answer = await rt.core.handle(placed("again", "m2", "1700000000.000200"))
    assert answer is not None and answer.text == "echo: again"
    assert tally.snapshot() == {"EVALSHA": 2}
    assert marks == ["", "1700000000.000100"], "each turn reads from the mark the one before wrote"
    assert await rt.store.shared.joined(place)
    assert await rt.store.redis.hget(rt.store.keys.thread(KEY), "ctx") == "1700000000.000200"


async def test_mapping_turns_and_index_share_one_ttl(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime(thread_idle_ttl="2h")
    await rt.core.handle(msg("hi", "m1"))
    ttls = await rt.store.ttls(KEY)
    for name, left in ttls.items():
        assert 7190 < left <= 7200, (name, ttls)
    record = await rt.store.get_thread(KEY)
    assert record is not None
    entries = await rt.store.index_entries()
    assert [k for k, _ in entries] == [KEY]
    turns = await rt.store.turns(KEY)
    assert turns == [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "echo: hi"}]


async def test_ttl_is_refreshed_on_use(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime(thread_idle_ttl="1h")
    await rt.core.handle(msg("one", "m1"))
    await rt.redis.pexpire(rt.store.keys.thread(KEY), 5000)
    await rt.redis.pexpire(rt.store.keys.turns(KEY), 5000)
    await rt.core.handle(msg("two", "m2"))
    ttls = await rt.store.ttls(KEY)
    assert ttls["thread"] > 3500 and ttls["turns"] > 3500


async def test_kept_turns_are_bounded(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime(keep_turns=4)
    for i in range(5):
        await rt.core.handle(msg(f"q{i}", f"m{i}"))
    turns = await rt.store.turns(KEY)
    assert [t["text"] for t in turns] == ["q3", "echo: q3", "q4", "echo: q4"]


async def test_fifty_concurrent_first_messages_make_one_thread_in_order(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime()
    texts = [f"message {i}" for i in range(50)]
    answers = await asyncio.gather(*(rt.core.handle(msg(t, f"m{i}")) for i, t in enumerate(texts)))
    assert [a.text if a else None for a in answers] == [f"echo: {t}" for t in texts]
    assert fake_openai.count("POST", "/v1/conversations") == 1
    (conv_id,) = {a.thread_id for a in answers if a}
    users = [text for role, text in items_text(fake_openai, conv_id) if role == "user"]
    assert users == texts


async def test_two_cores_on_one_redis_share_one_thread(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    a, b = await make_runtime(), await make_runtime()
    fake_openai.latency = 0.05
    answers = await asyncio.gather(*((a if i % 2 else b).core.handle(msg(f"t{i}", f"m{i}")) for i in range(10)))
    assert all(x is not None for x in answers)
    assert fake_openai.count("POST", "/v1/conversations") == 1


async def test_duplicate_delivery_is_answered_once(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime()
    fake_openai.latency = 0.2
    first, during = await asyncio.gather(rt.core.handle(msg("hi", "ev1")), rt.core.handle(msg("hi", "ev1")))
    after = await rt.core.handle(msg("hi", "ev1"))
    assert first is not None and during is None and after is None
    assert fake_openai.count("POST", "/v1/responses") == 1


async def test_deleted_conversation_recovers_silently_with_kept_turns(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    rt = await make_runtime()
    first = await rt.core.handle(msg("my name is Ada", "m1"))
    assert first is not None
    fake_openai.delete_conversation(first.thread_id)
    fake_openai.reset_calls()
    with caplog.at_level(logging.INFO, logger="threadkeeper.core"):
        answer = await rt.core.handle(msg("what is my name?", "m2"))
    assert answer is not None and answer.text == "echo: what is my name?" and answer.recovered
    assert answer.thread_id != first.thread_id
    assert fake_openai.count("POST", "/v1/conversations") == 1
    assert fake_openai.count("POST", "/v1/responses") == 2
    assert len(fake_openai.calls) == 3
    seeded = items_text(fake_openai, answer.thread_id)[:2]
    assert seeded == [("user", "my name is Ada"), ("assistant", "echo: my name is Ada")]
    record = await rt.store.get_thread(KEY)
    assert record is not None and record.thread_id == answer.thread_id
    lines = [r.getMessage() for r in caplog.records if first.thread_id in r.getMessage()]
    assert len(lines) == 1 and answer.thread_id in lines[0]


async def test_bare_404_is_confirmed_with_one_retrieve(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime()
    first = await rt.core.handle(msg("hi", "m1"))
    assert first is not None
    fake_openai.delete_conversation(first.thread_id)
    fake_openai.fail_next(404, body={"detail": "Not Found"}, path_prefix="/v1/responses")
    answer = await rt.core.handle(msg("still there?", "m2"))
    assert answer is not None and answer.recovered
    assert fake_openai.count("GET", f"/v1/conversations/{first.thread_id}") == 1


async def test_bare_404_on_a_living_conversation_is_a_config_error(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime()
    await rt.core.handle(msg("hi", "m1"))
    fake_openai.fail_next(404, body={"detail": "Not Found"}, path_prefix="/v1/responses")
    with pytest.raises(Misconfigured):
        await rt.core.handle(msg("again", "m2"))
    assert fake_openai.count("POST", "/v1/conversations") == 1


async def test_unknown_model_creates_no_thread(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    good = await make_runtime()
    await good.core.handle(msg("hi", "m1"))
    bad = await make_runtime(openai_model="gpt-nope")
    with caplog.at_level(logging.ERROR), pytest.raises(Misconfigured) as err:
        await bad.core.handle(msg("hello?", "m2"))
    assert "configured" in err.value.user_message
    assert "gpt-nope" not in err.value.user_message
    assert fake_openai.count("POST", "/v1/conversations") == 1
    assert any("OPENAI_MODEL" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    other = ThreadKey("slack", "T1", "C1", "U2")
    with pytest.raises(Misconfigured):
        await bad.core.handle(msg("first ever", "m3", other))
    assert len(fake_openai.active_conversations) == 1
    assert await bad.store.get_thread(other) is None


async def test_the_model_is_checked_at_start_not_before_the_first_users_answer(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    rt = await make_runtime()
    warming = rt.core.warm_up()
    assert warming is not None and rt.core.warm_up() is warming, "one check"
    await warming
    assert fake_openai.count("GET", "/v1/models") == 1
    fake_openai.reset_calls()
    first = await rt.core.handle(msg("hello", "m1"))
    assert first is not None and first.text == "echo: hello"
    assert fake_openai.calls == [("POST", "/v1/conversations"), ("POST", "/v1/responses")]

    bad = await make_runtime(openai_model="gpt-nope")
    with caplog.at_level(logging.WARNING):
        warming = bad.core.warm_up()
        assert warming is not None
        await warming
    assert any("OPENAI_MODEL" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    fake_openai.reset_calls()
    with pytest.raises(Misconfigured):
        await bad.core.handle(msg("first ever", "m2", ThreadKey("slack", "T1", "C1", "U2")))
    assert fake_openai.count("POST", "/v1/conversations") == 0, "no thread for a model the server does not know"


async def test_429_then_success(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime()
    await rt.core.handle(msg("hi", "m1"))
    fake_openai.fail_next(429, code="rate_limit_exceeded", headers={"retry-after-ms": "5"}, path_prefix="/v1/responses")
    answer = await rt.core.handle(msg("again", "m2"))
    assert answer is not None and answer.text == "echo: again"


async def test_429_after_retries_is_one_clear_sentence(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime(openai_max_retries=1)
    await rt.core.handle(msg("hi", "m1"))
    fake_openai.fail_next(429, headers={"retry-after-ms": "1"}, path_prefix="/v1/responses", times=2)
    with pytest.raises(Unavailable) as err:
        await rt.core.handle(msg("again", "m2"))
    assert "busy" in err.value.user_message
    assert (await rt.core.handle(msg("later", "m3"))) is not None


async def test_conversation_locked_then_success(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime()
    await rt.core.handle(msg("hi", "m1"))
    fake_openai.fail_next(400, code="conversation_locked", path_prefix="/v1/responses", times=2)
    answer = await rt.core.handle(msg("again", "m2"))
    assert answer is not None and answer.text == "echo: again"
    assert fake_openai.count("POST", "/v1/responses") == 4


async def test_timeout_is_a_clear_sentence_and_releases_the_lock(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(openai_timeout=0.3, openai_max_retries=0)
    await rt.core.handle(msg("hi", "m1"))
    fake_openai.fail_next(0, delay=1.5, path_prefix="/v1/responses")
    with pytest.raises(Unavailable) as err:
        await rt.core.handle(msg("slow", "m2"))
    assert err.value.user_message == TIMEOUT_SENTENCE
    assert await rt.redis.exists(rt.store.keys.lock(KEY)) == 0
    answer = await rt.core.handle(msg("after", "m3"))
    assert answer is not None and answer.text == "echo: after"


async def test_server_error_after_retries(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime(openai_max_retries=0)
    await rt.core.handle(msg("hi", "m1"))
    fake_openai.fail_next(503, path_prefix="/v1/responses")
    with pytest.raises(Unavailable) as err:
        await rt.core.handle(msg("x", "m2"))
    assert "Injected" not in err.value.user_message


async def test_streaming_deltas_add_up_to_the_answer(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    deltas: list[str] = []

    async def on_delta(delta: str) -> None:
        deltas.append(delta)

    answer = await rt.core.handle(msg("stream me a fairly long answer please", "m1"), on_delta)
    assert answer is not None and len(deltas) >= 2
    assert "".join(deltas) == answer.text == "echo: stream me a fairly long answer please"


async def test_forget_deletes_items_then_conversation_and_local_data(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime()
    first = await rt.core.handle(msg("hi", "m1"))
    assert first is not None
    result = await rt.core.forget(KEY)
    assert result.threads == 1 and result.remote_pending == 0
    assert fake_openai.conversations[first.thread_id].deleted
    assert fake_openai.orphan_items == set()
    assert await rt.store.get_thread(KEY) is None and await rt.store.turns(KEY) == []
    assert await rt.store.index_entries() == []
    again = await rt.core.forget(KEY)
    assert again.threads == 0
    nxt = await rt.core.handle(msg("new start", "m2"))
    assert nxt is not None and nxt.thread_id != first.thread_id


async def test_forget_with_remote_failure_queues_the_deletion(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(openai_max_retries=0)
    first = await rt.core.handle(msg("hi", "m1"))
    assert first is not None
    fake_openai.fail_next(500, path_prefix="/v1/conversations", times=5)
    result = await rt.core.forget(KEY)
    assert result.remote_pending == 1
    assert await rt.store.get_thread(KEY) is None
    assert await owed(rt.store) == {first.thread_id: "conversations"}


async def test_forget_user_erases_only_that_user(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    mine = [ThreadKey("slack", "T1", c, "U1") for c in ("C1", "C2", "C3")]
    theirs = ThreadKey("slack", "T1", "C1", "U2")
    other_team = ThreadKey("slack", "T2", "C1", "U1")
    for i, key in enumerate([*mine, theirs, other_team]):
        await rt.core.handle(msg("hi", f"m{i}", key))
    result = await rt.core.forget_user("slack", "T1", "U1")
    assert result.threads == 3
    for key in mine:
        assert await rt.store.get_thread(key) is None
    assert await rt.store.get_thread(theirs) is not None
    assert await rt.store.get_thread(other_team) is not None


async def test_chat_backend_end_to_end(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime(assistant_backend="chat")
    first = await rt.core.handle(msg("remember 42", "m1"))
    assert first is not None and first.text == "echo: remember 42" and first.thread_id.startswith("chat_")
    fake_openai.reset_calls()
    second = await rt.core.handle(msg("what number?", "m2"))
    assert second is not None and second.thread_id == first.thread_id
    assert fake_openai.calls == [("POST", "/v1/chat/completions")]
    sent = (fake_openai.requests[0].json or {})["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "remember 42" and sent[-1]["content"] == "what number?"
    await rt.redis.delete(rt.store.keys.chat_meta(first.thread_id))
    third = await rt.core.handle(msg("and now?", "m3"))
    assert third is not None and third.recovered and third.thread_id != first.thread_id
    await rt.core.forget(KEY)
    assert await rt.redis.exists(rt.store.keys.chat_history(third.thread_id)) == 0


async def test_redelivery_after_a_crash_is_answered(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    """A worker that dies mid-answer must not swallow the message: its claim lapses."""
    rt = await make_runtime(lock_ttl=0.3)
    fake_openai.latency = 5
    task = asyncio.create_task(rt.core.handle(msg("hi", "ev9")))
    for _ in range(500):
        if await rt.redis.exists(rt.store.keys.lock(KEY)):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    fake_openai.latency = 0
    answer = await rt.core.handle(msg("hi", "ev9"))
    assert answer is not None and answer.text == "echo: hi"


async def test_claim_of_a_dead_worker_lapses(make_runtime: MakeRuntime) -> None:
    """A worker killed outright leaves its claim and lock behind; both expire, the redelivery is answered."""
    rt = await make_runtime(lock_ttl=0.2)
    await claim_like_a_dead_worker(rt.store, KEY, "ev7")
    assert await rt.core.handle(msg("hi", "ev7")) is None
    answer = None
    for _ in range(100):
        answer = await rt.core.handle(msg("hi", "ev7"))
        if answer is not None:
            break
        await asyncio.sleep(0.05)
    assert answer is not None and answer.text == "echo: hi"


async def test_forget_channel_covers_its_platform_threads_only(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    here = ThreadKey("slack", "T1", "C1", "U1")
    in_threads = [ThreadKey("slack", "T1", f"C1/17000000{i}.0001", "U1") for i in range(2)]
    elsewhere = [ThreadKey("slack", "T1", "C10", "U1"), ThreadKey("slack", "T1", "C1/1.1", "U2")]
    for i, key in enumerate([here, *in_threads, *elsewhere]):
        await rt.core.handle(msg("hi", f"m{i}", key))
    result = await rt.core.forget_channel(here)
    assert result.threads == 3
    for key in [here, *in_threads]:
        assert await rt.store.get_thread(key) is None
    for key in elsewhere:
        assert await rt.store.get_thread(key) is not None
