"""Issue 19's streamed answers end as before when the server ends them badly: ``response.failed`` with or
without an ``error``, ``response.incomplete``, an ``error`` event with or without a ``code`` (the fields the
SDK's models default to None). Each is one sentence for the user and one log line, never a traceback; a
failure after a tool failed is answered again without tools.

Through the real openai SDK against the loopback fake (:meth:`FakeOpenAI.end_stream_next`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.assistants.errors import BROKEN_SENTENCE
from bot.domain import Incoming, ThreadKey
from bot.errors import Unavailable
from tests.fakes.openai_faults import StreamEnd
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.openai_state import JSON
from tests.support.fixtures import MakeRuntime
from tests.support.profiles import write_profiles

KEY = ThreadKey("slack", "T1", "C1", "U1")
SECRET = "my secret words"


async def _shown(_delta: str) -> None:
    return None


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


@pytest.mark.parametrize(("kind", "error", "logged"), [
    ("response.failed", {"code": "server_error", "message": "The model failed."}, "response failed: server_error"),
    ("response.failed", None, "response failed: None"),
    ("error", {"code": "server_error", "message": "Something went wrong."}, "stream error: server_error"),
    ("error", {"message": "Something went wrong."}, "stream error: None"),
], ids=["failed", "failed-without-error", "error", "error-without-code"])
async def test_a_failed_stream_is_one_sentence_and_one_error_line(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture,
    kind: StreamEnd, error: JSON | None, logged: str,
) -> None:
    rt = await make_runtime(openai_max_retries=0)
    assert await rt.core.handle(Incoming(KEY, "hello", message_id="m0"), _shown) is not None
    fake_openai.end_stream_next(kind, error=error)
    with caplog.at_level(logging.INFO), pytest.raises(Unavailable) as err:
        await rt.core.handle(Incoming(KEY, SECRET, message_id="m1"), _shown)
    assert err.value.user_message == Unavailable.user_message
    assert lines(caplog, logging.ERROR) == [logged]
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    answer = await rt.core.handle(Incoming(KEY, "still there?", message_id="m2"), _shown)
    assert answer is not None and answer.text == "echo: still there?"


async def test_an_incomplete_answer_is_shown_with_one_warning(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    rt = await make_runtime(openai_max_retries=0)
    fake_openai.end_stream_next("response.incomplete")
    with caplog.at_level(logging.INFO):
        answer = await rt.core.handle(Incoming(KEY, "tell me", message_id="m1"), _shown)
    assert answer is not None and answer.text == "echo: tell me"
    assert lines(caplog, logging.WARNING) == ["the answer is incomplete: max_output_tokens"]
    assert not [r for r in caplog.records if r.exc_info], "no traceback"


async def test_null_deltas_and_a_completed_event_without_its_response_are_one_sentence(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    rt = await make_runtime(openai_max_retries=0)
    shown: list[str] = []

    async def show(delta: str) -> None:
        shown.append(delta)

    fake_openai.end_stream_next("bare")
    with caplog.at_level(logging.INFO), pytest.raises(Unavailable) as err:
        await rt.core.handle(Incoming(KEY, SECRET, message_id="m1"), show)
    assert err.value.user_message == BROKEN_SENTENCE
    assert all(isinstance(d, str) and d for d in shown), "a null delta is never shown"
    assert lines(caplog, logging.ERROR) == [
        "streaming an answer: the assistant server sent back a response.completed event without its response"]
    assert not [r for r in caplog.records if r.exc_info], "no traceback"


PROFILES = """
profiles:
  - match: {platform: slack, channel: C8}
    tools:
      - {type: mcp, server_label: docs, server_url: "https://mcp.example.test/sse", allowed_tools: [search_docs]}
"""


async def test_a_failure_without_an_error_after_a_tool_failed_is_answered_without_tools(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rt = await make_runtime(profiles_file=write_profiles(tmp_path, PROFILES), openai_max_retries=0)
    fake_openai.mcp_failure = "call"
    fake_openai.end_stream_next("response.failed")
    with caplog.at_level(logging.WARNING, logger="threadkeeper.assistant"):
        answer = await rt.core.handle(Incoming(ThreadKey("slack", "T1", "C8", "U1"), "find it", "m1"), _shown)
    assert answer is not None and answer.text == "echo: find it"
    turns = [r.json or {} for r in fake_openai.requests if r.method == "POST" and r.path == "/v1/responses"]
    assert ["tools" in t for t in turns] == [True, False]
    assert any(m.startswith("the answer failed after a tool failed (response failed: None)")
               for m in lines(caplog, logging.WARNING))
