"""Any real server: refused optional parameters degrade, overflow in every shape, a small chat context.

Through the real openai client against the loopback fake, with its real-server modes
(``refuse_param``, ``chat_context_size``, ``fail_next`` bodies in other servers' shapes).
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.assistants.chat import REPLY_SHARE, ChatAssistant, prompt_budget
from bot.assistants.server import OPTIONAL_PARAMS, ServerMemory
from bot.domain import Incoming, ThreadKey, Turn
from bot.errors import TooLong
from bot.runtime import Runtime
from bot.store import ServerNotes
from bot.store.keys import Keys
from tests.fakes.openai_faults import RefusalShape
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import MakeRuntime
from tests.support.paths import REPO_ROOT

KEY = ThreadKey("slack", "T1", "C1", "U1")
FAKES = REPO_ROOT / "tests" / "fakes"


def msg(text: str, mid: str, key: ThreadKey = KEY) -> Incoming:
    return Incoming(key, text, message_id=mid)


async def _noop(_delta: str) -> None:
    return None


Trigger = Callable[[Runtime, int], Awaitable[object]]


async def answer_message(rt: Runtime, i: int) -> object:
    """A message from a new user each time, so every call also creates a conversation (metadata)."""
    answer = await rt.core.handle(msg(f"hello {i}", f"{rt.settings.redis_prefix}-{i}-{id(rt)}",
                                      ThreadKey("slack", "T1", "C1", f"U{i}")))
    assert answer is not None and answer.text == f"echo: hello {i}"
    return answer


async def stream_message(rt: Runtime, i: int) -> object:
    deltas: list[str] = []

    async def on_delta(delta: str) -> None:
        deltas.append(delta)

    answer = await rt.core.handle(msg(f"hello {i}", f"s{i}-{id(rt)}", ThreadKey("slack", "T1", "C1", f"U{i}")),
                                  on_delta)
    assert answer is not None and answer.text == f"echo: hello {i}" == "".join(deltas)
    return answer


async def summarise(rt: Runtime, i: int) -> object:
    turns = [Turn(role="user", text=f"question {i}"), Turn(role="assistant", text="an answer")]
    summary = await rt.assistant.summarize(turns)
    assert summary.text.startswith("echo:")
    return summary


# param -> (settings, what sends it, path)
CASES: dict[str, tuple[dict[str, Any], Trigger, str]] = {
    "truncation": ({}, answer_message, "/v1/responses"),
    "prompt_cache_key": ({}, answer_message, "/v1/responses"),
    "safety_identifier": ({}, answer_message, "/v1/responses"),
    "context_management": ({"context_compact_threshold": 50000}, answer_message, "/v1/responses"),
    "metadata": ({}, answer_message, "/v1/conversations"),
    "store": ({}, summarise, "/v1/responses"),
    "stream_options": ({"assistant_backend": "chat"}, stream_message, "/v1/chat/completions"),
    "tools": ({"profiles_file": str(FAKES / "profile_tools.yml")}, answer_message, "/v1/responses"),
    "temperature": ({"profiles_file": str(FAKES / "profile_temperature.yml")}, answer_message, "/v1/responses"),
}


def test_every_optional_parameter_is_exercised() -> None:
    assert set(CASES) == OPTIONAL_PARAMS


@pytest.mark.parametrize(("status", "shape"), [(400, "openai"), (500, "detail")])
@pytest.mark.parametrize("param", sorted(CASES))
async def test_a_refused_optional_parameter_is_dropped_once_for_every_worker(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture,
    param: str, status: int, shape: RefusalShape,
) -> None:
    overrides, trigger, path = CASES[param]
    fake_openai.refuse_param(param, status=status, shape=shape)
    rt = await make_runtime(openai_max_retries=0, **overrides)
    with caplog.at_level(logging.WARNING, logger="threadkeeper.assistant"):
        await trigger(rt, 1)  # refused, learned, sent again without it: answered
        await trigger(rt, 2)
        other = await make_runtime(openai_max_retries=0, **overrides)  # another worker, same Redis
        await trigger(other, 3)
    assert fake_openai.refused == [(path, param)]
    carrying = [r for r in fake_openai.requests if r.path == path and param in (r.json or {})]
    assert len(carrying) == 1, "sent again after the refusal"
    assert len([r for r in fake_openai.requests if r.path == path]) == 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and repr(param) in r.getMessage()]
    assert len(warnings) == 1
    assert str(status) in warnings[0].getMessage() and "gpt-test" in warnings[0].getMessage()
    assert not rt.assistant.supported(param) and not other.assistant.supported(param)
    assert await other.assistant.refused_params() == [param]


async def test_required_parts_are_never_dropped(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    """A server that refuses ``conversation`` (no Conversations API behind /v1/responses) is an error, not a
    turn without history."""
    rt = await make_runtime(openai_max_retries=0)
    await rt.core.handle(msg("hi", "m1"))
    fake_openai.refuse_param("conversation")
    with pytest.raises(Exception):  # noqa: B017 - whatever the core makes of it, it is not answered
        await rt.core.handle(msg("again", "m2"))
    assert all("conversation" in (r.json or {}) for r in fake_openai.requests if r.path == "/v1/responses")
    assert await rt.assistant.refused_params() == []


async def test_a_refusal_known_to_another_worker_is_never_sent(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    fake_openai.refuse_param("truncation", status=500)
    first = await make_runtime(openai_max_retries=0)
    await first.core.handle(msg("hi", "m1"))
    second = await make_runtime(openai_max_retries=0)
    fake_openai.reset_calls()
    await second.core.handle(msg("hi", "m2", ThreadKey("slack", "T1", "C1", "U2")))
    assert fake_openai.refused == [("/v1/responses", "truncation")]
    assert all("truncation" not in (r.json or {}) for r in fake_openai.requests)


async def test_an_unrelated_4xx_drops_nothing(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime(openai_max_retries=0)
    await rt.core.handle(msg("hi", "m1"))
    fake_openai.fail_next(400, message="Invalid 'input': something odd.", param="input", path_prefix="/v1/responses")
    with pytest.raises(Exception):  # noqa: B017
        await rt.core.handle(msg("again", "m2"))
    assert await rt.assistant.refused_params() == []
    await rt.core.handle(msg("and again", "m3"))
    assert "truncation" in (fake_openai.requests[-1].json or {})


async def test_a_fastapi_422_for_an_extra_field_is_a_refusal(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(openai_max_retries=0)
    detail = [{"type": "extra_forbidden", "loc": ["body", "prompt_cache_key"], "msg": "Extra inputs are not permitted"}]
    fake_openai.fail_next(422, body={"detail": detail}, path_prefix="/v1/responses")
    answer = await rt.core.handle(msg("hi", "m1"))
    assert answer is not None and answer.text == "echo: hi"
    assert await rt.assistant.refused_params() == ["prompt_cache_key"]


async def test_a_5xx_that_names_a_parameter_without_refusing_it_drops_nothing(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(openai_max_retries=0)
    fake_openai.fail_next(500, body={"detail": "failed to store the response"}, path_prefix="/v1/responses")
    with pytest.raises(Exception):  # noqa: B017
        await summarise(rt, 1)
    assert await rt.assistant.refused_params() == []
    await summarise(rt, 2)
    assert (fake_openai.requests[-1].json or {}).get("store") is False


async def test_an_expired_refusal_is_tried_again(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    fake_openai.refuse_param("truncation")
    rt = await make_runtime(openai_max_retries=0)
    await answer_message(rt, 1)
    assert not rt.assistant.supported("truncation")
    await rt.redis.delete(Keys(rt.settings.redis_prefix).server_notes(f"{fake_openai.base_url}|gpt-test"))
    assert await rt.assistant.refused_params() == []
    assert rt.assistant.supported("truncation")


# -- overflow in every shape (Conversations backend: the core rolls over) -----------------------------
LLAMA_BODY = {"error": {"code": 400, "type": "exceed_context_size_error",
                        "message": "request (930 tokens) exceeds the available context size (512 tokens), try "
                                   "increasing it", "n_prompt_tokens": 930, "n_ctx": 512}}
OVERFLOWS: dict[str, dict[str, Any]] = {
    "openai": {"code": "context_length_exceeded", "message": "Your input exceeds the context window of this model."},
    "llama.cpp": {"body": LLAMA_BODY},
    "vllm words": {"message": "This model's maximum context length is 4096 tokens. However, you requested 5000 "
                              "tokens (4000 in the messages, 1000 in the completion)."},
    "detail": {"body": {"detail": "Input length exceeds the context length of the model"}},
}


@pytest.mark.parametrize("shape", sorted(OVERFLOWS))
async def test_overflow_in_any_shape_rolls_the_conversation_over(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, shape: str
) -> None:
    rt = await make_runtime(openai_max_retries=0)
    first = await rt.core.handle(msg("hi", "m1"))
    fake_openai.fail_next(400, path_prefix="/v1/responses", **OVERFLOWS[shape])
    answer = await rt.core.handle(msg("again", "m2"))
    assert first is not None and answer is not None
    assert answer.recovered and answer.thread_id != first.thread_id and answer.text == "echo: again"
    assert await rt.assistant.refused_params() == []


# -- the chat backend on a small context ---------------------------------------------------------
def chat_sizes(fake: FakeOpenAI) -> list[int]:
    from tests.fakes.openai_faults import chat_prompt_tokens

    return [chat_prompt_tokens((r.json or {})["messages"]) for r in fake.requests if r.path == "/v1/chat/completions"]


async def test_chat_backend_learns_a_512_token_context_and_answers_every_turn(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake_openai.chat_context_size = 512
    rt = await make_runtime(assistant_backend="chat", openai_max_retries=0)
    with caplog.at_level(logging.WARNING, logger="threadkeeper.assistant"):
        for i in range(30):
            text = f"question number {i} " + "word " * 30
            answer = await rt.core.handle(msg(text, f"m{i}"), _noop if i % 2 else None)
            assert answer is not None and answer.text == f"echo: {text.strip()}"
            assert not answer.recovered
    sizes = chat_sizes(fake_openai)
    overflows = len(sizes) - 30
    assert 1 <= overflows <= 2, sizes
    assert max(sizes[-20:]) <= 512 * (1 - REPLY_SHARE) + 8
    assert isinstance(rt.assistant, ChatAssistant)
    learned = rt.assistant.context_size()
    assert learned < 12000
    assert sum(1 for r in caplog.records if "context window" in r.getMessage()) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # Another worker knows the size already: no overflow on its first message.
    fake_openai.reset_calls()
    other = await make_runtime(assistant_backend="chat", openai_max_retries=0)
    assert await other.core.handle(msg("question number 30 " + "word " * 30, "m30")) is not None
    assert len(fake_openai.requests) == 1
    assert isinstance(other.assistant, ChatAssistant) and other.assistant.context_size() == learned


async def test_chat_overflow_without_numbers_halves_until_it_fits(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(assistant_backend="chat", openai_max_retries=0)
    for i in range(12):
        await rt.core.handle(msg(f"question number {i} " + "word " * 30, f"m{i}"))
    fake_openai.fail_next(400, message="Prompt is too long: the context window is full.",
                          path_prefix="/v1/chat/completions", times=2)
    answer = await rt.core.handle(msg("one more", "m99"))
    assert answer is not None and answer.text == "echo: one more"
    sizes = chat_sizes(fake_openai)[-3:]
    assert sizes[1] <= sizes[0] // 2 + 4 and sizes[2] <= sizes[1] // 2 + 4


async def test_chat_message_too_big_alone_is_too_long(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_context_size = 512
    rt = await make_runtime(assistant_backend="chat", openai_max_retries=0)
    with pytest.raises(TooLong) as err:
        await rt.core.handle(msg("far too long " * 200, "m1"))
    assert "too long" in err.value.user_message
    # Known now: refused without asking the server again.
    fake_openai.reset_calls()
    with pytest.raises(TooLong):
        await rt.core.handle(msg("far too long " * 200, "m2"))
    assert fake_openai.requests == []
    answer = await rt.core.handle(msg("short", "m3"))
    assert answer is not None and answer.text == "echo: short"


async def test_chat_keeps_room_for_the_reply(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    assert prompt_budget(12000) == 9000
    rt = await make_runtime(assistant_backend="chat", context_budget=400)
    for i in range(20):
        await rt.core.handle(msg(f"question number {i} " + "word " * 10, f"m{i}"))
    assert isinstance(rt.assistant, ChatAssistant)
    assert rt.assistant.last_sent_tokens <= 300


# -- the notes port ------------------------------------------------------------------------------
async def test_server_notes_tell_one_worker_it_is_new(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    notes: ServerNotes = rt.store.notes
    assert await notes.write("srv", "refused:chat:store", "400")
    assert not await notes.write("srv", "refused:chat:store", "500")
    assert await notes.write("srv", "context", "512", replace=True)
    assert not await notes.write("srv", "context", "512", replace=True)
    assert await notes.write("srv", "context", "300", replace=True)
    assert await notes.read("srv") == {"refused:chat:store": "400", "context": "300"}
    assert 0 < await rt.redis.ttl(Keys(rt.settings.redis_prefix).server_notes("srv")) <= 86400
    # An expired fact is gone, and new again.
    await rt.redis.hset(Keys(rt.settings.redis_prefix).server_notes("srv"), "context", "1 512")
    assert await notes.read("srv") == {"refused:chat:store": "400"}
    assert await notes.write("srv", "context", "512")


class BrokenNotes:
    async def read(self, server: str) -> dict[str, str]:
        raise ConnectionError("redis is down")

    async def write(self, server: str, field: str, value: str, *, replace: bool = False) -> bool:
        raise ConnectionError("redis is down")


async def test_notes_failures_never_fail_a_message(fake_openai: FakeOpenAI) -> None:
    import openai

    memory = ServerMemory(fake_openai.base_url, "gpt-test", BrokenNotes())
    fake_openai.refuse_param("store")
    client = openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="test", max_retries=0)
    try:
        response = await memory.call("responses", client.responses.create,
                                     {"model": "gpt-test", "input": "hi", "store": False})
    finally:
        await client.close()
    assert response.output_text == "echo: hi"
    assert memory.refused() == ["responses:store"]


def test_assistants_never_import_redis_or_the_store() -> None:
    for path in Path("bot/assistants").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith(("redis", "bot.store")), (path, name)
