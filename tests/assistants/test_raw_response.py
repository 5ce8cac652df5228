"""Issue 19: a non-streamed answer goes out exactly as ``responses.create`` sends it, and its body is read as JSON
(:func:`bot.assistants.raw_stream.create_json`) the way the bot read the SDK's ``Response``: the same text, usage,
items, sources and tool calls, and the same failures for garbage, missing fields and error bodies sent with 200."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from aiohttp import web
from openai import AsyncOpenAI

from bot.assistants.conversations import output_ids, text_of, usage_of
from bot.assistants.errors import BROKEN_SENTENCE
from bot.assistants.raw_stream import ResponseView, create_json
from bot.assistants.tools import ToolRun
from bot.domain import Incoming, ThreadKey
from bot.errors import Unavailable
from bot.profiles.model import Profile
from tests.assistants.test_raw_stream import APPROVALS, OPTIONS, TURN
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import MakeRuntime
from tests.support.local_http import serve

ANSWER = {
    "id": "resp_1", "object": "response", "status": "completed", "model": "gpt-test", "created_at": 1,
    "output": [
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "q"}},
        {"type": "mcp_call", "id": "mcp_1", "server_label": "docs", "name": "search_docs", "arguments": "{}",
         "error": "boom"},
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": [
            {"type": "output_text", "text": "Hello ", "annotations": [
                {"type": "url_citation", "url": "https://example.test/a", "title": "A", "start_index": 0,
                 "end_index": 5}]},
            {"type": "refusal", "refusal": "no"},
            {"type": "output_text", "text": None, "annotations": []},
            {"type": "output_text", "text": "world", "annotations": []}]},
        {"type": "message", "id": "msg_2", "role": "assistant", "content": [
            {"type": "output_text", "text": "!", "annotations": []}]},
    ],
    "usage": {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15,
              "input_tokens_details": {"cached_tokens": 8}, "output_tokens_details": {"reasoning_tokens": 0}},
}
JSON_TYPE = "application/json"
BODIES: dict[str, tuple[str, str]] = {
    # name -> (body, content type)
    "answer": (json.dumps(ANSWER), JSON_TYPE),
    "no usage": (json.dumps({**ANSWER, "usage": None}), JSON_TYPE),
    "no output": (json.dumps({"id": "resp_1", "object": "response", "status": "failed"}), JSON_TYPE),
    "empty output": (json.dumps({**ANSWER, "output": []}), JSON_TYPE),
    "output not a list": (json.dumps({**ANSWER, "output": "surprise"}), JSON_TYPE),
    "message without content": (json.dumps({**ANSWER, "output": [{"type": "message", "id": "msg_1"}]}), JSON_TYPE),
    "text left out": (json.dumps({**ANSWER, "output": [{"type": "message", "id": "m", "content": [
        {"type": "output_text"}]}]}), JSON_TYPE),
    "item without type": (json.dumps({**ANSWER, "output": [{"id": "x"}]}), JSON_TYPE),
    "error body with 200": (json.dumps({"error": {"message": "overloaded", "type": "server_error", "code": None}}),
                            JSON_TYPE),
    "null": ("null", JSON_TYPE),
    "a list": ("[1, 2]", JSON_TYPE),
    "a string": ('"fine"', JSON_TYPE),
    "JSON sent as text": (json.dumps(ANSWER), "text/plain"),
    "HTML": ("<html>502 Bad Gateway</html>", "text/html"),
}


def read(response: Any) -> dict[str, Any]:
    """Everything ConversationsAssistant reads of a non-streamed response."""
    seen: dict[str, Any] = {}
    try:
        seen["text"] = text_of(response, "sending a message")
    except Unavailable as exc:
        seen["text"] = ("Unavailable", str(exc))
    seen["usage"] = usage_of(getattr(response, "usage", None))
    seen["status"] = getattr(response, "status", None)
    try:
        seen["items"] = output_ids(response)
    except (AttributeError, TypeError) as exc:
        seen["items"] = type(exc).__name__
    run = ToolRun(Profile(model="gpt-test", instructions=""))
    try:
        run.see_response(response)
    except (AttributeError, TypeError) as exc:
        seen["see"] = type(exc).__name__
    seen["sources"], seen["tool_calls"] = run.sources, run.tool_calls
    return seen


async def _serve(body: str, content_type: str, seen: list[tuple[dict[str, str], str, Any]]) -> web.AppRunner:
    async def respond(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), request.query_string, await request.json()))
        return web.Response(body=body.encode(), headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_post("/v1/responses", respond)
    runner, _ = await serve(app)
    return runner


@pytest.mark.parametrize("name", sorted(BODIES))
async def test_a_body_reads_as_the_sdk_s_response_reads(name: str, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[dict[str, str], str, Any]] = []
    runner = await _serve(*BODIES[name], seen)
    client = AsyncOpenAI(api_key="sk-test", base_url=f"http://127.0.0.1:{runner.addresses[0][1]}/v1", max_retries=0)
    params = {k: v for k, v in TURN.items() if k != "stream"}
    try:
        with caplog.at_level(logging.CRITICAL):
            by_sdk, raw = read(await client.responses.create(**params)), read(await create_json(client, **params))
    finally:
        await client.close()
        await runner.cleanup()
    assert raw == by_sdk
    (_, _, sdk_body), (_, _, raw_body) = seen
    assert raw_body == sdk_body
    if name == "answer":
        assert raw["text"] == "Hello world!" and raw["items"] == ("ws_1", "mcp_1", "msg_1", "msg_2")
        assert raw["usage"].cached_tokens == 8 and raw["sources"] == {"https://example.test/a": "A"}
        assert raw["tool_calls"] == [("web_search", "completed"), ("mcp:docs", "failed")]


@pytest.mark.parametrize("params", [TURN, APPROVALS, OPTIONS], ids=["turn", "approvals", "request-options"])
async def test_the_request_is_the_sdk_s(params: dict[str, Any]) -> None:
    seen: list[tuple[dict[str, str], str, Any]] = []
    runner = await _serve(json.dumps(ANSWER), JSON_TYPE, seen)
    client = AsyncOpenAI(api_key="sk-test", base_url=f"http://127.0.0.1:{runner.addresses[0][1]}/v1", max_retries=0)
    params = {k: v for k, v in params.items() if k != "stream"}
    try:
        await client.responses.create(**params)
        response = await create_json(client, **params)
    finally:
        await client.close()
        await runner.cleanup()
    (sdk_headers, sdk_query, sdk_body), (raw_headers, raw_query, raw_body) = seen
    assert raw_body == sdk_body and raw_query == sdk_query and "stream" not in raw_body
    assert {k: v for k, v in raw_headers.items() if k.lower() != "idempotency-key"} == \
        {k: v for k, v in sdk_headers.items() if k.lower() != "idempotency-key"}
    assert isinstance(response, ResponseView) and response.output_text == "Hello world!"


async def test_a_truncated_body_is_the_sdk_s_json_error(fake_openai: FakeOpenAI) -> None:
    client = AsyncOpenAI(api_key="sk-test", base_url=fake_openai.base_url, max_retries=0)
    try:
        conv = await client.conversations.create()
        fake_openai.truncate_next("/v1/responses")
        with pytest.raises(json.JSONDecodeError):
            await create_json(client, model="gpt-test", conversation=conv.id, input="hi")
        answer = await create_json(client, model="gpt-test", conversation=conv.id, input="again")
        assert answer.output_text == "echo: again" and answer.usage.input_tokens > 0
    finally:
        await client.close()


KEY = ThreadKey("slack", "T1", "C1", "U1")
FAULTS: dict[str, dict[str, Any]] = {
    # fail_next(200, ...) on /v1/responses
    "error body with 200": {"code": "server_error", "message": "overloaded"},
    "no output": {"body": {"id": "resp_1", "object": "response", "status": "completed"}},
    "message without content": {"body": {"id": "resp_1", "object": "response", "output": [
        {"type": "message", "id": "msg_1", "role": "assistant"}]}},
    "a list": {"body": [{"output_text": "hi"}]},
    "a string": {"body": "hi"},
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_broken_200_through_the_core_is_one_sentence_and_one_error_line(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    rt = await make_runtime(openai_max_retries=0)
    assert await rt.core.handle(Incoming(KEY, "hello", message_id="m0")) is not None
    fake_openai.fail_next(200, path_prefix="/v1/responses", **FAULTS[fault])
    with caplog.at_level(logging.INFO), pytest.raises(Unavailable) as err:
        await rt.core.handle(Incoming(KEY, "my secret words", message_id="m1"))
    assert err.value.user_message == BROKEN_SENTENCE
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "threadkeeper.assistant"]
    assert len(errors) == 1 and "sent back" in errors[0].getMessage(), [r.getMessage() for r in errors]
    answer = await rt.core.handle(Incoming(KEY, "still there?", message_id="m2"))
    assert answer is not None and answer.text == "echo: still there?"
