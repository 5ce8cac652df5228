"""Issue 19: a streamed answer's request goes out exactly as ``responses.create`` sends it (straight over aiohttp:
:mod:`bot.assistants.direct_stream`, whose faults are in ``test_direct_stream``), and its events are read without
a pydantic model each (those read through attributes get a view of their JSON)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from openai import AsyncOpenAI, AsyncStream, DefaultAioHttpClient
from openai.types.responses import ResponseErrorEvent, ResponseFailedEvent

from bot.assistants.direct_stream import DirectStream
from bot.assistants.raw_stream import _request, open_stream, text_delta, typed
from tests.support.local_http import serve

DELTA = {
    "type": "response.output_text.delta",
    "delta": "hi",
    "item_id": "m",
    "output_index": 0,
    "content_index": 0,
    "sequence_number": 1,
}
ADDED = {
    "type": "response.output_item.added",
    "output_index": 0,
    "sequence_number": 0,
    "item": {"type": "web_search_call", "id": "ws_1", "status": "in_progress"},
}


TOOLS = [
    {"type": "web_search"},
    {
        "type": "mcp",
        "server_label": "docs",
        "server_url": "https://mcp.example.test/sse",
        "require_approval": {"never": {"tool_names": ["search_docs"]}},
        "headers": {"Authorization": "Bearer t"},
    },
]
TURN = {
    "model": "gpt-test",
    "conversation": "conv_1",
    "input": [{"role": "user", "content": "hi"}],
    "instructions": "Be brief.",
    "prompt_cache_key": "tk-1",
    "safety_identifier": "tk-u1",
    "truncation": "auto",
    "context_management": [{"type": "compaction", "compact_threshold": 2000}],
    "temperature": 0.2,
    "tools": TOOLS,
    "stream": True,
}
"""What ConversationsAssistant._stream sends: ConversationsAssistant._params, the tools in play, ``stream``."""
APPROVALS = {
    **TURN,
    "input": [
        {
            "type": "mcp_approval_response",
            "approval_request_id": "mcpr_1",
            "approve": False,
            "reason": "Nobody here can approve it.",
        }
    ],
}
"""The follow-up that answers approval requests (ToolRun.answers)."""
OPTIONS = {
    "model": "gpt-test",
    "input": "hi",
    "stream": True,
    "extra_headers": {"X-Trace": "t1"},
    "extra_query": {"trace": "1"},
    "extra_body": {"service_tier": "flex"},
    "timeout": 30.0,
}


HEADERS = {**TURN, "extra_headers": {"X-Trace": "t2"}}


@pytest.mark.parametrize(
    "params", [TURN, APPROVALS, OPTIONS, HEADERS], ids=["turn", "approvals", "request-options", "extra-headers"]
)
async def test_the_request_is_the_sdk_s_and_the_events_its_json(params: dict[str, Any]) -> None:
    seen: list[tuple[list[tuple[bytes, bytes]], str, bytes]] = []

    async def respond(request: web.Request) -> web.StreamResponse:
        seen.append((list(request.raw_headers), request.query_string, await request.read()))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in (ADDED, DELTA):
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/responses", respond)
    runner, base = await serve(app)
    client = AsyncOpenAI(api_key="sk-test", base_url=f"{base}/v1", max_retries=0, http_client=DefaultAioHttpClient())
    try:
        by_sdk = [event async for event in await client.responses.create(**params)]
        body, options = _request(params)
        posted = [
            event
            async for event in await client.post(
                "/responses", body=body, cast_to=object, options=options, stream=True, stream_cls=AsyncStream[object]
            )
        ]
        before = [event async for event in await open_stream(client, **TURN)]  # the client's plan, made once
        stream = await open_stream(client, **params)
        assert isinstance(stream, DirectStream), "a plain client's stream goes straight over aiohttp"
        raw = [event async for event in stream]
        after = [event async for event in await open_stream(client, **TURN)]
    finally:
        await client.close()
        await runner.cleanup()
    (
        (sdk_headers, sdk_query, sdk_body),
        (post_headers, _, post_body),
        plain,
        (raw_headers, raw_query, raw_body),
        plain_after,
    ) = seen
    assert raw_headers == sdk_headers == post_headers, "every header, in the SDK's order"
    assert plain_after == plain and before == after, "a request's own options stay its own"
    assert raw_query == sdk_query and json.loads(raw_body) == json.loads(sdk_body) and raw_body == post_body
    if params is OPTIONS:
        headers = {k.decode(): v.decode() for k, v in raw_headers}
        sent = json.loads(raw_body)
        assert headers["x-trace"] == "t1" and raw_query == "trace=1" and sent["service_tier"] == "flex"
        assert not {"extra_headers", "extra_query", "extra_body", "timeout"} & set(sent)
        assert headers["x-stainless-read-timeout"] == "30.0"
    assert raw == posted == [ADDED, DELTA] and [e.type for e in by_sdk] == [ADDED["type"], DELTA["type"]]


def test_only_the_events_read_through_attributes_are_built() -> None:
    assert text_delta(DELTA) == "hi" and text_delta(ADDED) is None
    assert typed(ADDED) is ADDED, "tool events go to ToolRun.see as JSON"
    assert text_delta({**DELTA, "delta": None}) is None
    assert typed({**DELTA, "delta": None}).delta is None, "an odd delta: read as the SDK's model would be"
    completed = {
        "type": "response.completed",
        "sequence_number": 9,
        "response": {
            "id": "resp_1",
            "output": [{"type": "message", "id": "msg_1", "content": []}],
            "usage": {"input_tokens": 3, "output_tokens": 2},
            "error": None,
        },
    }
    event = typed(completed)
    assert event.response.output[0].id == "msg_1" and event.response.usage.input_tokens == 3
    assert event.response.error is None and getattr(event.response, "incomplete_details", "unset") == "unset"
    with pytest.raises(AttributeError):
        _ = event.response.status
    failed = typed({"type": "response.failed", "sequence_number": 2, "response": {"id": "resp_1", "status": "failed"}})
    assert isinstance(failed, ResponseFailedEvent) and failed.response.error is None, "the SDK's default"
    error = typed({"type": "error", "message": "boom", "sequence_number": 2})
    assert isinstance(error, ResponseErrorEvent) and error.code is None
