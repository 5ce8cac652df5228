"""Issue 19: a streamed turn sent straight over aiohttp (:mod:`bot.assistants.direct_stream`) meets the wire as the
SDK does. Each case runs twice against the same loopback server, once through the SDK's ``post`` (what
``open_stream`` did before) and once through ``open_stream``, each with a client as ``make_client`` builds it: the
server sees the same attempts (every header, the body), and the caller the same events, or the same exception
(class, message, status, code, body)."""

from __future__ import annotations

import asyncio
import gc
import gzip
import importlib.util
import json
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientSession, web
from openai import APIConnectionError, AsyncOpenAI, AsyncStream

from bot.assistants import direct_stream
from bot.assistants.conversations import ConversationsAssistant, make_client
from bot.assistants.direct_stream import DirectStream
from bot.assistants.raw_stream import _request, create_json, open_stream
from tests.assistants.test_raw_stream import DELTA
from tests.support.fixtures import settings_for_test
from tests.support.local_http import serve

Respond = Callable[[web.Request], Awaitable[web.StreamResponse]]
PARAMS = {"model": "gpt-test", "conversation": "conv_1", "input": "hi", "stream": True}
DONE = {"type": "response.completed", "sequence_number": 2, "response": {"id": "resp_1", "output": []}}
RELEASE = web.AppKey("release", asyncio.Event)
FAST = {"retry-after-ms": "1"}
"""A retry's wait the SDK honours (1 ms), so that retried cases stay quick."""


def sse(*chunks: bytes, content_type: str = "text/event-stream", pause: float = 0.0, **headers: str) -> Respond:
    """``chunks`` as they are; a ``pause`` between them keeps them apart on the wire (not asserted upon)."""

    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type, **headers})
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
            await asyncio.sleep(pause)
        return response

    return respond


def events(*items: object, done: bool = False) -> Respond:
    text = "".join(f"data: {json.dumps(item)}\n\n" for item in items) + ("data: [DONE]\n\n" if done else "")
    return sse(text.encode())


def status(code: int, body: str | dict[str, Any], content_type: str = "application/json", **headers: str) -> Respond:
    text = body if isinstance(body, str) else json.dumps(body)

    async def respond(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, text=text, content_type=content_type, headers=headers)

    return respond


def error(code: int, message: str, kind: str, err: str | None, param: str | None = None, **headers: str) -> Respond:
    return status(code, {"error": {"message": message, "type": kind, "param": param, "code": err}}, **headers)


async def hang(request: web.Request) -> web.StreamResponse:
    await request.app[RELEASE].wait()
    return web.Response()


async def drop(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()
    return web.Response()


async def cut(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(f'data: {json.dumps(DELTA)}\n\ndata: {{"type"'.encode())
    assert request.transport is not None
    request.transport.close()
    return response


async def gzipped(request: web.Request) -> web.StreamResponse:
    body = gzip.compress(f"data: {json.dumps(DELTA)}\n\ndata: {json.dumps(DONE)}\n\n".encode())
    return web.Response(body=body, headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"})


class Wire:
    """A loopback server answering each attempt with the next responder (the last one repeats)."""

    def __init__(self) -> None:
        self.script: list[Respond] = []
        self.seen: list[tuple[str, str, str, list[tuple[bytes, bytes]], bytes]] = []
        self.app = web.Application()
        self.app[RELEASE] = asyncio.Event()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            (request.method, request.path, request.query_string, list(request.raw_headers), await request.read())
        )
        return await self.script[min(len(self.seen), len(self.script)) - 1](request)


@pytest.fixture
async def wire() -> AsyncIterator[tuple[Wire, str]]:
    served = Wire()
    runner, base = await serve(served.app)
    yield served, base
    served.app[RELEASE].set()
    await runner.cleanup()


Outcome = tuple[list[object], tuple[Any, ...] | None]


async def run(
    wire: tuple[Wire, str],
    script: list[Respond],
    *,
    direct: bool,
    retries: int = 0,
    wait: float = 5.0,
    base: str | None = None,
    params: dict[str, Any] = PARAMS,
) -> Outcome:
    """The events read (and the exception that ended them) with the SDK's ``post`` or with ``open_stream``."""
    served, url = wire
    served.script, served.seen = script, []
    client = make_client(
        settings_for_test(
            "redis://127.0.0.1:6379/9", "direct", f"{base or url}/v1", openai_max_retries=retries, openai_timeout=wait
        )
    )
    read: list[object] = []
    try:
        if direct:
            stream: Any = await open_stream(client, **params)
        else:
            body, options = _request(params)
            stream = await client.post(
                "/responses", body=body, cast_to=object, options=options, stream=True, stream_cls=AsyncStream[object]
            )
        async with stream:
            async for event in stream:
                read.append(event)
    except Exception as exc:
        return read, (
            type(exc),
            str(exc),
            getattr(exc, "status_code", None),
            getattr(exc, "code", None),
            getattr(exc, "param", None),
            getattr(exc, "body", None),
        )
    finally:
        if direct:
            assert direct_stream._DIRECT[client].plan is not None, "the first attempt went straight"
        await client.close()
    return read, None


async def both(wire: tuple[Wire, str], script: list[Respond], **options: Any) -> tuple[Outcome, list[Any]]:
    """The SDK's outcome and attempts; asserts the direct path's are the same."""
    by_sdk = await run(wire, script, direct=False, **options)
    sdk_attempts = wire[0].seen
    direct = await run(wire, script, direct=True, **options)
    assert direct == by_sdk
    assert wire[0].seen == sdk_attempts, "the same attempts, headers (retry counts included) and bodies"
    return by_sdk, sdk_attempts


def retry_counts(attempts: list[Any]) -> list[bytes]:
    return [dict(headers)[b"x-stainless-retry-count"] for _, _, _, headers, _ in attempts]


OPENAI_ERRORS = {
    "400": error(
        400, "Unsupported parameter: 'truncation'.", "invalid_request_error", "unsupported_parameter", "truncation"
    ),
    "401": error(401, "Incorrect API key provided: sk-test.", "invalid_request_error", "invalid_api_key"),
    "404": error(404, "Conversation with id 'conv_1' not found.", "invalid_request_error", "conversation_not_found"),
    "409 no retry": error(
        409, "Conversation is locked.", "invalid_request_error", "conversation_locked", **{"x-should-retry": "false"}
    ),
    "502 html": status(502, "<html><body>Bad gateway</body></html>", "text/html", **FAST),
    "500 not json": status(500, "upstream reset", "text/plain", **FAST),
}


@pytest.mark.parametrize("name", OPENAI_ERRORS)
@pytest.mark.parametrize("retries", [0, 1])
async def test_a_refusal_raises_what_the_sdk_raises(wire: tuple[Wire, str], name: str, retries: int) -> None:
    (read, raised), attempts = await both(wire, [OPENAI_ERRORS[name]], retries=retries)
    assert read == [] and raised is not None and raised[2] == int(name[:3])
    retried = name.startswith("5") and retries
    assert retry_counts(attempts) == ([b"0", b"1"] if retried else [b"0"])


@pytest.mark.parametrize(
    "first",
    [
        error(429, "Rate limit reached.", "requests", "rate_limit_exceeded", **FAST),
        error(500, "The server had an error.", "server_error", None, **FAST),
        status(503, "busy", "text/plain", **FAST),
    ],
    ids=["429", "500", "503"],
)
@pytest.mark.parametrize("retries", [0, 1, 2])
async def test_a_retried_status_is_retried_as_the_sdk_retries_it(
    wire: tuple[Wire, str], first: Respond, retries: int
) -> None:
    (read, raised), attempts = await both(wire, [first, events(DELTA, DONE)], retries=retries)
    if retries:
        assert read == [DELTA, DONE] and raised is None and retry_counts(attempts) == [b"0", b"1"]
    else:
        assert raised is not None and retry_counts(attempts) == [b"0"]


async def test_a_stream_that_says_error_raises_the_sdk_s_api_error(wire: tuple[Wire, str]) -> None:
    failing = {"error": {"message": "The model is overloaded.", "type": "server_error", "code": "overloaded"}}
    (read, raised), _ = await both(wire, [events(DELTA, failing, DONE)])
    assert read == [DELTA] and raised is not None and raised[0].__name__ == "APIError" and raised[3] == "overloaded"
    (read, raised), _ = await both(wire, [events(DELTA, {"error": {"type": "x"}})])
    assert raised is not None and raised[1] == "An error occurred during streaming"
    responses_error = {"type": "error", "code": "server_error", "message": "boom", "sequence_number": 1}
    (read, raised), _ = await both(wire, [events(responses_error)])
    assert read == [responses_error] and raised is None, "the Responses API's own error event is an event"


async def test_what_is_not_an_event_stream_reads_as_the_sdk_reads_it(wire: tuple[Wire, str]) -> None:
    (read, raised), _ = await both(wire, [status(200, {"id": "resp_1", "object": "response"})])
    assert read == [] and raised is None
    (read, raised), _ = await both(wire, [sse(b"data: {not json\n\n")])
    assert raised is not None and raised[0] is json.JSONDecodeError
    (read, raised), _ = await both(wire, [gzipped])
    assert read == [DELTA, DONE] and raised is None


async def test_the_sse_framing_is_read_as_the_sdk_reads_it(wire: tuple[Wire, str]) -> None:
    d = json.dumps(DELTA).encode()
    chunks = (
        b": keep-alive\r\n\r",
        b"\nevent: response.output_text.delta\rdata: ",
        d,
        b"\r",
        b"\n",
        b"\r",
        b"\n\r\n",
        b'data: {"a":\r',
        b"\n",
        b'data: 1}\r\n\r\nretry: x\nid: 7\0\n\nevent: thread.run.step\ndata: {"b": 2}\n\n',
        b"event:\ndata:",
        d,
        b"\n\n",
        b'data: [DONE] then\n\ndata: {"never": 1}\n\n',
    )
    (read, raised), _ = await both(wire, [sse(*chunks, pause=0.01)])
    assert read == [DELTA, {"a": 1}, {"data": {"b": 2}, "event": "thread.run.step"}, DELTA] and raised is None
    (read, raised), _ = await both(wire, [sse(b"id: 1\ndata: ", d, b"\n\n\n")])
    assert read == [DELTA] and raised is not None and raised[0] is json.JSONDecodeError, "an id outlives its event"
    (read, raised), _ = await both(wire, [sse(b"data: ", d, b"\n\ndata: ", d)])
    assert read == [DELTA] and raised is None, "an event cut before its blank line is not an event"
    (read, raised), _ = await both(wire, [sse(b"data: ", d, b"\n\ndata: \xc3\n\n")])
    assert read == [DELTA] and raised is not None and raised[0] is UnicodeDecodeError


async def test_a_broken_connection_raises_what_the_sdk_raises(wire: tuple[Wire, str]) -> None:
    (read, raised), attempts = await both(wire, [hang], wait=0.3)
    assert raised is not None and raised[0].__name__ == "APITimeoutError" and len(attempts) == 1
    (read, raised), _ = await both(wire, [cut])
    assert read == [DELTA] and raised is not None and raised[0].__name__ == "APIConnectionError"
    (read, raised), attempts = await both(wire, [drop, events(DELTA, DONE)], retries=1)
    assert read == [DELTA, DONE] and raised is None and retry_counts(attempts) == [b"0", b"1"]
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}"
    (read, raised), _ = await both(wire, [hang], base=refused)
    assert raised is not None and issubclass(raised[0], APIConnectionError), "a timeout, as the SDK's transport maps it"


async def test_a_redirect_is_followed_by_the_sdk(wire: tuple[Wire, str]) -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect("/v2/responses")

    by_sdk = await run(wire, [moved, events(DELTA, DONE)], direct=False)
    assert by_sdk == await run(wire, [moved, moved, events(DELTA, DONE)], direct=True) == ([DELTA, DONE], None)
    assert [(m, p) for m, p, *_ in wire[0].seen[1:]] == [("POST", "/v1/responses"), ("POST", "/v2/responses")]


async def test_other_clients_go_through_the_sdk_and_the_session_closes_with_the_assistant(
    wire: tuple[Wire, str],
) -> None:
    served, base = wire
    served.script = [events(DELTA, done=True)]
    plain = AsyncOpenAI(api_key="sk-test", base_url=f"{base}/v1", max_retries=0)  # httpx2's own transport
    try:
        stream = await open_stream(plain, **PARAMS)
        assert isinstance(stream, AsyncStream) and [e async for e in stream] == [DELTA]
    finally:
        await plain.close()
    settings = settings_for_test("redis://127.0.0.1:6379/9", "direct", f"{base}/v1")
    assistant = ConversationsAssistant(settings)
    stream = await open_stream(assistant.client, **PARAMS)
    assert isinstance(stream, DirectStream) and [e async for e in stream] == [DELTA]
    session = assistant.client._client._transport.client  # type: ignore[attr-defined]
    await assistant.close()
    assert isinstance(session, ClientSession) and session.closed and assistant.client.is_closed()


def held(peers: set[object]) -> Respond:
    """One event, then the stream stays open until the test releases it."""

    async def respond(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(f"data: {json.dumps(DELTA)}\n\n".encode())
        await request.app[RELEASE].wait()
        return response

    return respond


def pool(client: AsyncOpenAI) -> Any:
    """The connector of the SDK transport's own session (None before its first request)."""
    session = client._client._transport.client  # type: ignore[attr-defined]
    return session.connector if isinstance(session, ClientSession) else None


async def test_streams_and_the_sdk_s_other_requests_share_one_pool(wire: tuple[Wire, str]) -> None:
    """OPENAI_MAX_CONNECTIONS caps every request: with 1, a call made while an answer streams waits for it."""
    served, base = wire
    peers: set[object] = set()
    answered = status(200, {"id": "resp_2", "output": []})

    async def script(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        return await answered(request)

    served.script = [held(peers), script]
    settings = settings_for_test("redis://127.0.0.1:6379/9", "direct", f"{base}/v1", openai_max_connections=1)
    client = make_client(settings)
    try:
        stream = await open_stream(client, **PARAMS)
        assert isinstance(stream, DirectStream) and await stream.__anext__() == DELTA
        call = asyncio.create_task(create_json(client, model="gpt-test", input="hi"))
        for _ in range(10_000):  # turns of the loop: the call runs until it is sent or waits for a connection
            if call.done() or (pool(client) is not None and pool(client)._waiters):
                break
            await asyncio.sleep(0)
        assert not call.done() and len(served.seen) == 1, "the call waits for the stream's connection"
        served.app[RELEASE].set()
        assert [e async for e in stream] == []
        assert (await call).id == "resp_2" and len(peers) == 1, "then it has it: one socket in all"
    finally:
        await client.close()


async def test_a_long_line_in_small_pieces_is_read_in_linear_time(wire: tuple[Wire, str]) -> None:
    """A big event (a ``response.completed`` with a long answer) arrives in many reads; each read's bytes are
    scanned once, not the line read so far again (quadratic: 8 MB in 16 KB writes cost about 11 s of CPU, 30 times
    the SDK's). The bound is loose (the SDK's CPU twice over): here the two cost about the same."""
    big = {**DONE, "response": {"id": "resp_1", "output": [], "text": "x" * 8_000_000}}
    line = f"data: {json.dumps(big)}\r\n\r\n".encode()
    head, end = line[:-4], line[-4:]
    pieces = [head[i : i + 16384] for i in range(0, len(head), 16384)] + [end[:3], end[3:]]
    cpu: dict[bool, float] = {}
    for direct in (False, True):
        started = time.process_time()  # the server's writes too, the same for both
        assert await run(wire, [sse(*pieces)], direct=direct) == ([big], None), "a CR ends a write, its LF the next"
        cpu[direct] = time.process_time() - started
    assert cpu[True] < 2 * cpu[False] + 0.1, f"{cpu[True]:.2f} s of CPU, the SDK {cpu[False]:.2f} s"


async def test_a_stream_dropped_unread_gives_its_connection_back(wire: tuple[Wire, str]) -> None:
    """As the SDK's ``AsyncStream`` (its generator is closed when it is collected); ``aclose`` and ``response`` as
    it has them."""
    served, base = wire
    served.script = [held(set())]
    client = make_client(settings_for_test("redis://127.0.0.1:6379/9", "direct", f"{base}/v1"))
    try:
        stream = await open_stream(client, **PARAMS)
        assert isinstance(stream, DirectStream) and await stream.__anext__() == DELTA
        assert len(pool(client)._acquired) == 1
        del stream
        gc.collect()
        assert not pool(client)._acquired, "the connection is given back (closed: its body was not read)"
        stream = await open_stream(client, **PARAMS)
        assert await stream.__anext__() == DELTA and len(pool(client)._acquired) == 1
        assert stream.response.status_code == 200 and stream.response.headers["content-type"] == "text/event-stream"
        await stream.aclose()
        assert not pool(client)._acquired
        del stream
        gc.collect()  # closed already: nothing more
    finally:
        await client.close()


async def test_an_sdk_without_what_the_direct_path_reads_goes_through_post(
    wire: tuple[Wire, str], caplog: pytest.LogCaptureFixture
) -> None:
    """``openai>=3,<4``: an SDK whose internals differ (here a client without ``workload_identity``) streams through
    its own ``post``, said once at DEBUG, instead of failing every answer."""
    served, base = wire
    served.script = [events(DELTA, done=True)]
    client = make_client(settings_for_test("redis://127.0.0.1:6379/9", "direct", f"{base}/v1"))
    del client.workload_identity
    caplog.set_level(logging.DEBUG, logger=direct_stream.__name__)
    try:
        for _ in range(2):
            stream = await open_stream(client, **PARAMS)
            assert isinstance(stream, AsyncStream) and [e async for e in stream] == [DELTA]
    finally:
        await client.close()
    said = [r for r in caplog.records if r.name == direct_stream.__name__]
    assert len(said) == 1 and said[0].levelno == logging.DEBUG and "workload_identity" in said[0].getMessage()


async def test_an_sdk_without_a_module_the_direct_path_imports_goes_through_post(
    wire: tuple[Wire, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module imports without the SDK internals it reads (each stream then goes through ``post``)."""
    served, base = wire
    served.script = [events(DELTA, done=True)]
    client = make_client(settings_for_test("redis://127.0.0.1:6379/9", "direct", f"{base}/v1"))
    monkeypatch.setitem(sys.modules, "openai._vendor.httpx_aiohttp.transport", None)  # an SDK without it
    spec = importlib.util.find_spec(direct_stream.__name__)
    assert spec is not None and spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)  # imported as with that SDK
    assert isinstance(fresh.MISSING, ImportError)
    try:
        body, options = _request(PARAMS)
        stream = await fresh.open_stream(client, "/responses", body, options)
        assert isinstance(stream, AsyncStream) and [e async for e in stream] == [DELTA]
    finally:
        await client.close()


async def test_a_client_or_request_set_up_otherwise_is_sent_as_the_sdk_sends_it(wire: tuple[Wire, str]) -> None:
    """What the SDK builds the headers and URL from (the request's ``security``, the client's default headers and
    query, its HTTP client's headers and params) is part of the plan's key: changed, the request changes."""
    served, base = wire
    served.script = [events(DELTA, done=True)]
    body, options = _request(PARAMS)
    client = make_client(settings_for_test("redis://127.0.0.1:6379/9", "direct", f"{base}/v1"))
    client.admin_api_key = "sk-admin"
    changes: list[tuple[Callable[[], None], dict[str, Any]]] = [
        (lambda: None, options),
        (lambda: None, {**options, "security": {"admin_api_key_auth": True}}),
        (lambda: client._custom_headers.update({"X-Team": "a"}), options),  # type: ignore[attr-defined]
        (lambda: client._custom_query.update({"team": "a"}), options),  # type: ignore[attr-defined]
        (lambda: client._client.headers.update({"X-Proxy-Hint": "b"}), options),
        (lambda: setattr(client._client, "params", client._client.params.merge({"hint": "b"})), options),
    ]
    try:
        for change, sent in changes:
            change()
            by: dict[bool, list[Any]] = {}
            for direct in (False, True):
                served.seen = []
                if direct:
                    stream: Any = await direct_stream.open_stream(client, "/responses", body, sent)  # type: ignore[arg-type]
                else:
                    stream = await direct_stream._sdk_post((client, "/responses", body, sent))  # type: ignore[arg-type]
                assert [e async for e in stream] == [DELTA] and isinstance(stream, DirectStream) == direct
                by[direct] = served.seen
            assert by[True] == by[False]
    finally:
        await client.close()
