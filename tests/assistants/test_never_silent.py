"""Never silent: empty, truncated, malformed or cut answers, a lock that never clears, an unknown model.

Each ends in one sentence for the user and one log line for the operator (never the user's text).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from bot.assistants.conversations import ConversationsAssistant
from bot.assistants.errors import BROKEN_SENTENCE, LOCKED_SENTENCE, UnknownModel
from bot.domain import Incoming, ThreadKey
from bot.errors import Misconfigured, Unavailable
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import MakeRuntime

KEY = ThreadKey("slack", "T1", "C1", "U1")
SECRET = "my secret words"
PATHS = {"conversations": "/v1/responses", "chat": "/v1/chat/completions"}


def msg(text: str, mid: str, key: ThreadKey = KEY) -> Incoming:
    return Incoming(key, text, message_id=mid)


async def _collect(_delta: str) -> None:
    return None


Fault = Callable[[FakeOpenAI, str], None]
FAULTS: dict[str, tuple[Fault, bool]] = {
    # name -> (switch it on for a path, streamed?)
    "truncated body": (lambda fake, path: fake.truncate_next(path), False),
    "malformed body": (lambda fake, path: fake.fail_next(200, body={"object": "surprise"}, path_prefix=path), False),
    "empty answer": (lambda fake, path: fake.empty_next(path), False),
    "cut stream": (lambda fake, path: fake.truncate_next(path), True),
    "dropped stream": (lambda fake, path: fake.truncate_next(path, abort=True), True),
    "empty stream": (lambda fake, path: fake.empty_next(path), True),
}


@pytest.mark.parametrize("backend", sorted(PATHS))
@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_broken_answer_is_one_sentence_and_one_error_line(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture, backend: str, fault: str
) -> None:
    rt = await make_runtime(assistant_backend=backend, openai_max_retries=0)
    assert await rt.core.handle(msg("hello", "m0")) is not None
    switch, streamed = FAULTS[fault]
    switch(fake_openai, PATHS[backend])
    with caplog.at_level(logging.INFO), pytest.raises(Unavailable) as err:
        await rt.core.handle(msg(SECRET, "m1"), _collect if streamed else None)
    assert err.value.user_message == BROKEN_SENTENCE
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "threadkeeper.assistant"]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "sent back" in errors[0].getMessage()
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    answer = await rt.core.handle(msg("still there?", "m2"))
    assert answer is not None and answer.text == "echo: still there?"


async def test_a_lock_that_never_clears_says_the_conversation_is_busy(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(openai_max_retries=0)
    assert await rt.core.handle(msg("hello", "m0")) is not None
    assert isinstance(rt.assistant, ConversationsAssistant)
    rt.assistant.locked_backoff = (0.0, 0.0, 0.0)
    fake_openai.always_locked = True
    fake_openai.reset_calls()
    with pytest.raises(Unavailable) as err:
        await rt.core.handle(msg("again", "m1"))
    assert err.value.user_message == LOCKED_SENTENCE
    assert fake_openai.count("POST", "/v1/responses") == 4
    fake_openai.always_locked = False
    assert await rt.core.handle(msg("now?", "m2")) is not None


async def test_a_lock_that_clears_is_answered(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime(openai_max_retries=0)
    assert await rt.core.handle(msg("hello", "m0")) is not None
    assert isinstance(rt.assistant, ConversationsAssistant)
    rt.assistant.locked_backoff = (0.0, 0.0, 0.0)
    fake_openai.fail_next(400, code="conversation_locked", message="busy", path_prefix="/v1/responses", times=2)
    answer = await rt.core.handle(msg("again", "m1"))
    assert answer is not None and answer.text == "echo: again"


# -- unknown models -------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", sorted(PATHS))
@pytest.mark.parametrize("shape", ["openai404", "compat400"])
async def test_an_unknown_model_in_any_shape_is_unknown_model(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture, backend: str, shape: str
) -> None:
    fake_openai.unknown_model_shape = shape  # type: ignore[assignment]
    rt = await make_runtime(assistant_backend=backend, openai_model="gpt-nope", openai_max_retries=0)
    with caplog.at_level(logging.ERROR), pytest.raises(UnknownModel) as err:
        await rt.core.handle(msg("hello?", "m1"))
    assert isinstance(err.value, Misconfigured)
    assert "gpt-nope" not in err.value.user_message
    assert any("OPENAI_MODEL" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert fake_openai.active_conversations == {}
    assert await rt.assistant.refused_params() == []


async def test_a_model_named_in_a_fastapi_404_is_unknown_model(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(openai_max_retries=0)
    assert await rt.core.handle(msg("hello", "m0")) is not None
    fake_openai.fail_next(404, body={"detail": "The model `gpt-test` does not exist."}, path_prefix="/v1/responses")
    with pytest.raises(UnknownModel):
        await rt.core.handle(msg("again", "m1"))
    assert fake_openai.count("POST", "/v1/conversations") == 1


@pytest.mark.parametrize("backend", sorted(PATHS))
async def test_check_model(make_runtime: MakeRuntime, fake_openai: FakeOpenAI, backend: str) -> None:
    good = await make_runtime(assistant_backend=backend, openai_max_retries=0)
    bad = await make_runtime(assistant_backend=backend, openai_model="gpt-nope", openai_max_retries=0)
    await good.assistant.check_model()
    with pytest.raises(UnknownModel):
        await bad.assistant.check_model()  # OpenAI: 404 model_not_found
    fake_openai.unknown_model_shape = "compat400"
    with pytest.raises(UnknownModel):
        await bad.assistant.check_model()
    fake_openai.model_retrieve_404 = True  # vLLM, llama-server: only the list route
    await good.assistant.check_model()
    with pytest.raises(UnknownModel):
        await bad.assistant.check_model()
    fake_openai.fail_next(404, body={"detail": "Not Found"}, path_prefix="/v1/models", times=2)
    await bad.assistant.check_model()  # no models endpoint at all: cannot tell, does not block
