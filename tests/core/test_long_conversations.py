"""Long conversations: bounded context, bounded cost, no dead threads."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.assistants.chat import fit_budget
from bot.domain import Incoming, ThreadKey
from bot.errors import TooLong
from bot.tokens import estimate_tokens, message_tokens
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import MakeRuntime
from tests.support.items import items_text

KEY = ThreadKey("slack", "T1", "D1", "U1")


def msg(text: str, mid: str, key: ThreadKey = KEY) -> Incoming:
    return Incoming(key, text, message_id=mid)


async def test_truncation_and_cache_key_are_sent(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime()
    other = ThreadKey("slack", "T1", "D1", "U2")
    for i, key in enumerate((KEY, KEY, other)):
        await rt.core.handle(msg("hi", f"m{i}", key))
    bodies = [r.json or {} for r in fake_openai.requests if r.path == "/v1/responses"]
    assert [b["truncation"] for b in bodies] == ["auto"] * 3
    keys = [b["prompt_cache_key"] for b in bodies]
    assert keys[0] == keys[1] != keys[2]
    assert "U1" not in keys[0]
    assert len({b["instructions"] for b in bodies}) == 1
    assert "context_management" not in bodies[0]


async def test_truncation_disabled_and_compaction_are_sent_as_configured(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(context_truncation="disabled", context_compact_threshold=50000)
    await rt.core.handle(msg("hi", "m1"))
    body = fake_openai.requests[-1].json or {}
    assert body["truncation"] == "disabled"
    assert body["context_management"] == [{"type": "compaction", "compact_threshold": 50000}]


async def test_context_overflow_rolls_over_once_and_reprimes(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake_openai.context_limit = 8
    rt = await make_runtime(context_truncation="disabled")
    answers = []
    with caplog.at_level(logging.INFO, logger="threadkeeper.core"):
        for i in range(5):
            answer = await rt.core.handle(msg(f"turn {i}", f"m{i}"))
            assert answer is not None and answer.text == f"echo: turn {i}"
            answers.append(answer)
    assert fake_openai.count("POST", "/v1/conversations") == 2
    old, new = answers[0].thread_id, answers[-1].thread_id
    assert old != new and answers[-1].recovered
    assert fake_openai.conversations[old].deleted
    roles_texts = items_text(fake_openai, new)[:6]
    assert roles_texts[0] == ("user", "turn 1") and roles_texts[-1] == ("assistant", "echo: turn 3")
    rolled = [r for r in caplog.records if "context window" in r.getMessage()]
    assert len(rolled) == 1 and rolled[0].levelno == logging.INFO


async def test_rollover_with_summary_costs_one_extra_call(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    fake_openai.context_limit = 9
    rt = await make_runtime(context_truncation="disabled", context_summary=True)
    for i in range(6):
        assert await rt.core.handle(msg(f"turn {i}", f"m{i}")) is not None
    responses = [r.json or {} for r in fake_openai.requests if r.path == "/v1/responses"]
    summaries = [body for body in responses if not body.get("conversation")]
    assert len(summaries) == 1
    new = next(c for c in fake_openai.conversations.values() if not c.deleted)
    assert "Summary of our earlier conversation" in items_text(fake_openai, new.id)[0][1]


async def test_truncation_auto_keeps_one_thread(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    fake_openai.context_limit = 6
    rt = await make_runtime()
    for i in range(8):
        assert await rt.core.handle(msg(f"turn {i}", f"m{i}")) is not None
    assert fake_openai.count("POST", "/v1/conversations") == 1
    assert fake_openai.truncations


async def test_chat_backend_stays_within_budget(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime(assistant_backend="chat", context_budget=300, assistant_instructions="Be brief.")
    for i in range(30):
        assert await rt.core.handle(msg(f"question number {i} " + "word " * 10, f"m{i}")) is not None
    sent = [r.json or {} for r in fake_openai.requests if r.path == "/v1/chat/completions"]
    sizes = [sum(message_tokens(m["content"], estimate_tokens) for m in body["messages"]) for body in sent]
    assert max(sizes) <= 300
    assert all(body["messages"][0] == {"role": "system", "content": "Be brief."} for body in sent)
    assert sizes[-1] == sizes[-2]


async def test_usage_is_recorded_per_thread_and_per_user(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    for i in range(3):
        await rt.core.handle(msg(f"hello {i}", f"m{i}"))
    record = await rt.store.get_thread(KEY)
    assert record is not None and record.input_tokens > 0 and record.output_tokens > 0
    assert await rt.store.tokens_today(KEY) == record.input_tokens + record.output_tokens
    metrics = rt.metrics.render().decode()
    assert 'threadkeeper_tokens_total{kind="input"}' in metrics


texts = st.text(st.characters(codec="utf-8"), max_size=400)
history_st = st.lists(st.tuples(st.sampled_from(["user", "assistant"]), texts), max_size=40)


@settings(max_examples=300, deadline=None)
@given(instructions=texts, history=history_st, text=texts, budget=st.integers(16, 3000))
def test_fit_budget_property(instructions: str, history: list[tuple[str, str]], text: str, budget: int) -> None:
    messages = [{"role": role, "content": content} for role, content in history]
    try:
        sent = fit_budget(instructions, messages, text, budget, estimate_tokens)
    except TooLong:
        assert message_tokens(instructions, estimate_tokens) + message_tokens(text, estimate_tokens) > budget
        return
    assert sum(message_tokens(m["content"], estimate_tokens) for m in sent) <= budget
    assert sent[0] == {"role": "system", "content": instructions}
    assert sent[-1] == {"role": "user", "content": text}
    middle = sent[1:-1]
    assert middle == messages[len(messages) - len(middle) :] if middle else True
