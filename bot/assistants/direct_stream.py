"""A streamed turn's request straight over aiohttp, keeping the SDK's request, errors and retries (issue 19).

Under load the SDK's request machinery (``post``, ``_build_request``, the auth wrappers, httpx2's ``send``, the
vendored aiohttp transport, SSE decoding through five generators per event) was 15-20 % of the CPU per answer.
:func:`open_stream` sends the same bytes over the SDK transport's own ``aiohttp.ClientSession`` (one pool, so one
connection cap, and one cookie jar for every request of the client) and reads the events itself.
It keeps of the SDK: the URL, headers and timeout its ``_build_request`` makes (once per client while what it reads
stays: key, URL, timeout, organization, project, default headers and query, the HTTP client's headers and params, the
request's ``security``; per request when the request has extra headers, query or timeout), with
only the body (``openapi_dumps``) and ``content-length`` varying, as in its first attempt; the vendored transport's
settings (connection limit, keep-alive, TLS, connect/read/pool timeouts, no redirects or decompression) and its
mapping of aiohttp's exceptions; ``AsyncStream.__stream__`` (``cast_to=object``): the SSE decoder's lines,
``[DONE]`` and the drain after it, ``thread.*`` events, an event whose JSON has ``error`` raising its ``APIError``,
read errors as ``APITimeoutError``/``APIConnectionError``. Everything else is the SDK's own: a first attempt that
is not a 2xx (a status, a connection error, a timeout) is replayed into its request loop (``post`` on a copy of the
client whose first send returns that outcome), so the SDK decides whether and when to retry, with which headers,
and what to raise; a compressed 2xx is read by its ``AsyncStream``; a redirect is sent again through it (it
follows). A stream dropped unread gives its connection back when it is collected, as an ``AsyncStream`` does.

Only a plain client goes this way (``AsyncOpenAI`` with an API key, no provider, workload identity or key callable,
over the SDK's aiohttp transport without proxy, auth or event hooks); any other goes through ``post`` unchanged, as
does every client with an SDK (``openai>=3,<4``) lacking an internal this module reads (said once at DEBUG).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import logging
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, TypeAlias

import aiohttp
import anyio
import httpx2
from openai import APIConnectionError, APIError, APITimeoutError, AsyncOpenAI, AsyncStream
from yarl import URL

MISSING: ImportError | None = None
"""The SDK's internal that could not be imported (then every stream goes through ``post``)."""
try:
    from openai._base_client import _merge_mappings, get_platform
    from openai._httpx2 import request_exceptions, timeout_exceptions
    from openai._models import FinalRequestOptions
    from openai._streaming import SSEDecoder, _SSELineDecoder
    from openai._utils import asyncify
    from openai._utils._json import openapi_dumps
    from openai._vendor.httpx_aiohttp.transport import AiohttpResponseStream, AiohttpTransport, map_aiohttp_exceptions
except ImportError as exc:  # pragma: no cover - an SDK laid out otherwise (the test loads this module so)
    MISSING = exc
if TYPE_CHECKING:
    from openai._types import RequestOptions

log = logging.getLogger(__name__)
EventStream: TypeAlias = "AsyncStream[object] | DirectStream"
Call: TypeAlias = "tuple[AsyncOpenAI, str, dict[str, Any], RequestOptions]"
"""A ``post``'s client, path, body and options."""
REDIRECTS = frozenset({301, 302, 303, 307, 308})
CACHED = frozenset({"security", "extra_json"})
"""Request options that leave the SDK's URL and headers as they are (with others they are built per request)."""


class _Plan:
    """The SDK's request but for its body: the URL, the headers around ``content-length``, how it is sent."""

    def __init__(self, request: httpx2.Request, transport: AiohttpTransport) -> None:
        items = [(k, v) for k, v in request.headers.items() if k != "cookie"]  # cookies: the session's jar
        at = [k for k, _ in items].index("content-length")
        self.head, self.tail, self.transport = items[:at], items[at + 1 :], transport
        self.url = URL(str(request.url), encoded=True)
        timeout = request.extensions.get("timeout", {})  # as the vendored transport reads it
        self.send: dict[str, Any] = {"allow_redirects": False, "auto_decompress": False, "compress": False}
        self.send["timeout"] = aiohttp.ClientTimeout(
            sock_connect=timeout.get("connect"), sock_read=timeout.get("read"), connect=timeout.get("pool")
        )


class _Direct:
    """A client's plan (made again when anything the SDK's ``_build_request`` reads for it changes)."""

    def __init__(self) -> None:
        self.key: tuple[Any, ...] | None = None
        self.plan: _Plan | None = None
        self.sdk = False  # this SDK lacks what the plan reads: post, from now on

    async def plan_for(self, client: AsyncOpenAI, path: str, options: RequestOptions) -> _Plan | None:
        if MISSING is not None:
            raise MISSING
        if not options.keys() <= CACHED:
            return await _plan(client, path, options)
        http, own = client._client, (client._custom_headers, client._custom_query, options.get("security"))
        who = (client.api_key, client.admin_api_key, client.organization, client.project, client._base_url)
        key = (path, *who, client.timeout, *map(str, own), tuple(http.headers.raw), str(http.params))  # str: a copy
        if key != self.key:
            self.key, self.plan = key, await _plan(client, path, options)
        return self.plan


_DIRECT: weakref.WeakKeyDictionary[AsyncOpenAI, _Direct] = weakref.WeakKeyDictionary()
"""Each client's plan, as long as the client lives (a closed client's streams go through ``post``)."""


async def _plan(client: AsyncOpenAI, path: str, options: RequestOptions) -> _Plan | None:
    """The plan of a plain client's request (see the module's docstring); None for any other client."""
    http = client._client
    transport = getattr(http, "_transport", None)
    if type(client) is not AsyncOpenAI or not isinstance(transport, AiohttpTransport) or callable(transport.client):
        return None
    auth = (client._provider_runtime, client.workload_identity, client._api_key_provider, client.custom_auth)
    if any((*auth, client._idempotency_header, http.auth, transport.proxy, transport.uds, *http.event_hooks.values())):
        return None
    if not callable(client._send_request) or not callable(client._make_sse_decoder):  # _replay's, AsyncStream's
        return None
    if client._platform is None:  # as AsyncAPIClient.request does before its first request
        client._platform = await asyncify(get_platform)()
    request = _sdk_request((client, path, {}, options))
    if request.url.userinfo or http._transport_for_url(request.url) is not transport:
        return None  # credentials in the URL, or a proxy mounted for it
    return _Plan(request, transport)


def _session(transport: AiohttpTransport) -> aiohttp.ClientSession | None:
    """The transport's own session (made as it makes it on its first request); None where the SDK would not send
    over it on this loop (closed, or made in another loop: the SDK's request then does what it does)."""
    if transport.client is None:
        transport.client = transport.get_client()
    session = transport.client
    if not isinstance(session, aiohttp.ClientSession) or session.closed:
        return None
    return session if session._loop is asyncio.get_running_loop() else None


def _sdk_request(call: Call) -> httpx2.Request:
    """The request the SDK's ``post`` sends first."""
    client, path, body, options = call
    return client._build_request(FinalRequestOptions.construct(method="post", url=path, json_data=body, **options))


async def _sdk_post(call: Call) -> AsyncStream[object]:
    client, path, body, options = call
    stream = AsyncStream[object]
    return await client.post(path, body=body, cast_to=object, options=options, stream=True, stream_cls=stream)


def _mapped(exc: Exception) -> Exception:
    """``exc`` as the SDK's aiohttp transport raises it (an httpx2 exception, or ``exc`` when it maps none)."""
    try:
        with map_aiohttp_exceptions():
            raise exc
    except Exception as mapped:
        return mapped
    return exc  # pragma: no cover


def _wrapped(response: aiohttp.ClientResponse, request: httpx2.Request) -> httpx2.Response:
    """``response`` as the vendored transport hands it to the SDK."""
    extensions = {"http_version": b"HTTP/1.1"}
    if response.reason:
        extensions["reason_phrase"] = response.reason.encode()
    stream, headers = AiohttpResponseStream(response), response.raw_headers
    return httpx2.Response(response.status, headers=headers, stream=stream, request=request, extensions=extensions)


async def _replay(call: Call, first: aiohttp.ClientResponse | Exception) -> AsyncStream[object]:
    """The SDK's ``post`` whose first attempt's outcome is ``first``: its retries, waits, headers and errors."""
    client, path, body, options = call
    pending = [first]

    async def send(request: httpx2.Request, *, stream: bool, **kwargs: Any) -> httpx2.Response:
        if not pending:
            return await client._send_request(request, stream=stream, **kwargs)
        outcome = pending.pop()
        if isinstance(outcome, aiohttp.ClientResponse):
            return _wrapped(outcome, request)
        if isinstance(outcome, httpx2.RequestError):
            outcome.request = request  # as httpx2's send sets it
        raise outcome

    twin = copy.copy(client)
    twin._send_request = send  # type: ignore[method-assign]
    try:
        return await _sdk_post((twin, path, body, options))
    finally:
        if pending and isinstance(first, aiohttp.ClientResponse):
            first.release()


async def open_stream(client: AsyncOpenAI, path: str, body: dict[str, Any], options: RequestOptions) -> EventStream:
    """``client.post(path, body=body, options=options, stream=True, stream_cls=AsyncStream[object])``, the same
    events as JSON, sent straight over aiohttp when the client is a plain one."""
    call: Call = (client, path, body, options)
    direct = _DIRECT.get(client) or _DIRECT.setdefault(client, _Direct())
    try:
        plan = None if direct.sdk else await direct.plan_for(client, path, options)
        session = None if plan is None or client._client.is_closed else _session(plan.transport)
    except (AttributeError, ImportError) as exc:  # openai>=3,<4: an SDK without an internal read here
        direct.sdk, direct.plan = True, None
        log.debug("streams of %r go through the SDK's post: %r", client, exc)
        return await _sdk_post(call)
    if plan is None or session is None:
        return await _sdk_post(call)
    extra = options.get("extra_json")
    payload = openapi_dumps(_merge_mappings(body, extra) if extra is not None else body)
    headers = [*plan.head, ("content-length", str(len(payload))), *plan.tail]
    try:
        response = await session.request("POST", plan.url, data=payload, headers=headers, **plan.send)
    except Exception as exc:
        return await _replay(call, _mapped(exc))
    if 200 <= response.status < 300:
        encoding = response.headers.get("Content-Encoding")
        if not encoding or encoding.strip().lower() == "identity":
            return DirectStream(response, call)
        return AsyncStream[object](cast_to=object, client=client, response=_wrapped(response, _sdk_request(call)))
    if response.status in REDIRECTS and "Location" in response.headers and client._client.follow_redirects:
        response.release()
        return await _sdk_post(call)
    return await _replay(call, response)


class DirectStream:
    """A 2xx response's events as ``AsyncStream[object]`` yields them (see the module's docstring)."""

    def __init__(self, response: aiohttp.ClientResponse, call: Call) -> None:
        self._response, self._call = response, call
        self._ready: deque[tuple[str | None, str]] = deque()
        self._lines, self._decoder = _SSELineDecoder(), SSEDecoder()  # the SDK's own, fed chunk by chunk
        self._done = False
        self._error: UnicodeDecodeError | None = None  # raised after the events before it, as the SDK's decoder

    def __aiter__(self) -> DirectStream:
        return self

    async def __aenter__(self) -> DirectStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._done = True
        with map_aiohttp_exceptions():
            await self._response.__aexit__(None, None, None)

    async def aclose(self) -> None:
        await self.close()

    def __del__(self) -> None:
        """Dropped unread: the connection goes back (closed), as the SDK's stream's does when its generator is
        collected; the response's own callbacks keep it from being collected, so it would stay acquired."""
        if not self._response.closed:
            with contextlib.suppress(Exception):  # the loop may be closed already
                self._response.release()

    @functools.cached_property
    def response(self) -> httpx2.Response:
        """The response as the SDK's stream has it (its status and headers; its events are read here)."""
        return _wrapped(self._response, _sdk_request(self._call))

    async def __anext__(self) -> object:
        try:
            while not self._ready:
                if self._done:
                    error, self._error = self._error, None
                    raise error or StopAsyncIteration()
                await self._read()
            event, data = self._ready.popleft()
            if data.startswith("[DONE]"):
                await self._drain()
                raise StopAsyncIteration
            if event is not None and event.startswith("thread."):
                return {"data": json.loads(data), "event": event}
            value = json.loads(data)
            if isinstance(value, dict) and value.get("error"):
                error = value["error"]
                message = error.get("message") if isinstance(error, dict) else None
                message = message if message and isinstance(message, str) else "An error occurred during streaming"
                raise APIError(message=message, request=_sdk_request(self._call), body=error)
            return value
        except BaseException:  # as the SDK's stream: the response closed, nothing more to read
            self._ready.clear()
            await self.close()
            raise

    async def _read(self) -> None:
        """The next chunk's lines, read as the SDK's ``SSEDecoder`` reads them."""
        try:
            chunk = await self._response.content.readany()
        except Exception as exc:
            mapped = _mapped(exc)
            if isinstance(mapped, timeout_exceptions()):
                raise APITimeoutError(request=_sdk_request(self._call)) from mapped
            if isinstance(mapped, request_exceptions()):
                raise APIConnectionError(request=_sdk_request(self._call)) from mapped
            raise
        if not chunk:  # the end: what is left is a last line
            lines, self._done = self._lines.finish(), True
        else:
            lines = self._lines.feed(chunk)  # this chunk's bytes only: a long line costs its length once
        for raw in lines:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._error, self._done = exc, True
                return
            sse = self._decoder.decode(line)
            if sse is not None:
                self._ready.append((sse.event, sse.data))

    async def _drain(self) -> None:
        """As the SDK after ``[DONE]``: the rest of the body is read (for 0.1 s at most), so the connection is kept."""
        try:
            with anyio.move_on_after(0.1):
                while await self._response.content.readany():
                    await anyio.lowlevel.checkpoint()
        except Exception as exc:
            if not isinstance(_mapped(exc), request_exceptions()):
                raise
