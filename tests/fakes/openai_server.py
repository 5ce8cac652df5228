"""A loopback fake of the OpenAI HTTP API (Conversations, Responses, Chat Completions, Models).

The real ``openai.AsyncOpenAI(base_url=fake.base_url, api_key="test")`` (or the sync client, through
:class:`FakeOpenAIThread`) talks to it over HTTP, so retries, timeouts, SSE parsing and error mapping
are the SDK's own. Faults are injected with :meth:`FakeOpenAI.fail_next`; how third-party servers differ
from api.openai.com is imitated by the opt-in modes of :class:`tests.fakes.openai_faults.ServerModes`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from .openai_faults import PathRule, ServerModes, cut_events, empty_stream_events, send_cut_json
from .openai_files import FilesApi
from .openai_state import (
    JSON,
    ApiError,
    ConversationState,
    Fault,
    RequestRecord,
    Truncation,
    chat_chunks,
    chat_completion,
    chat_usage,
    conversation_not_found,
    default_error_type,
    error_body,
    estimate_tokens,
    item_text,
    model_json,
    new_id,
    normalize_item,
    now,
    response_json,
    response_stream_events,
    response_usage,
    validate_items,
    validate_metadata,
)
from .openai_tools import ToolsApi

ReplyFn = Callable[[str, list[JSON]], str]
_INDEX = web.RequestKey("record_index", int)
_BODY = web.RequestKey("body", dict)
_CUT = web.RequestKey("cut", PathRule)  # truncate_next matched this request
_EMPTY = web.RequestKey("empty", bool)  # empty_next matched this request


def _echo(text: str, _items: list[JSON]) -> str:
    return f"echo: {text}"


class Hold:
    """Requests held until :meth:`release` (see :meth:`FakeOpenAI.hold_standalone`)."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        """Set once a request is waiting here."""
        self._released = asyncio.Event()

    async def wait(self) -> None:
        self.arrived.set()
        await self._released.wait()

    def release(self) -> None:
        """Let the held requests (and any later one) go on."""
        self._released.set()


class FakeOpenAI(ServerModes, FilesApi, ToolsApi):
    def __init__(self, *, latency: float = 0.0, models: Iterable[str] = ("gpt-test",),
                 reply: ReplyFn | None = None, context_limit: int | None = None) -> None:
        self.latency = latency
        self.models: list[str] = list(models)
        self.reply: ReplyFn = reply or _echo
        self.context_limit = context_limit
        self.stream_delay = 0.0  # seconds slept between streamed text deltas
        self.standalone_hold: Hold | None = None  # holds /responses calls outside any conversation (summaries)
        self.simulate_locks = False  # True: concurrent /responses on one conversation -> conversation_locked
        self.calls: list[tuple[str, str]] = []
        self.requests: list[RequestRecord] = []
        self.conversations: dict[str, ConversationState] = {}
        self.responses: dict[str, JSON] = {}
        self.truncations: list[Truncation] = []
        self._faults: list[Fault] = []
        self._cache_keys: dict[str, int] = {}
        self._busy: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._init_modes()
        self._init_files()
        self._init_tools()

    # ---- test helpers -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("FakeOpenAI is not started")
        return self._base_url

    @property
    def orphan_items(self) -> set[str]:
        """Ids of items still held by deleted conversations (the real API keeps them too)."""
        return {i["id"] for c in self.conversations.values() if c.deleted for i in c.items}

    @property
    def active_conversations(self) -> dict[str, ConversationState]:
        return {k: c for k, c in self.conversations.items() if not c.deleted}

    def count(self, method: str, path_prefix: str) -> int:
        return sum(1 for m, p in self.calls if m == method.upper() and p.startswith(path_prefix))

    def fail_next(self, status: int, *, code: str | None = None, message: str = "Injected failure",
                  path_prefix: str = "/v1/", times: int = 1, headers: dict[str, str] | None = None,
                  body: object | None = None, delay: float = 0.0, type: str | None = None,
                  param: str | None = None) -> None:
        self._faults.append(Fault(status, code, message, path_prefix, times, dict(headers or {}), body,
                                  delay, type, param))

    def hold_standalone(self) -> Hold:
        """From now on, each /responses call outside any conversation (a memory fold's summary) waits
        until :meth:`Hold.release`; :attr:`Hold.arrived` is set once one waits. Events, not sleeps: what
        the test does meanwhile happens before the call ends however slow the machine."""
        self.standalone_hold = Hold()
        return self.standalone_hold

    def delete_conversation(self, conv_id: str) -> None:
        self.conversations[conv_id].deleted = True

    def reset_calls(self) -> None:
        self.calls.clear()
        self.requests.clear()

    # ---- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application(middlewares=[self._pipeline], client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_post("/v1/conversations", self._create_conversation)
        r.add_get("/v1/conversations/{cid}", self._get_conversation)
        r.add_post("/v1/conversations/{cid}", self._update_conversation)
        r.add_delete("/v1/conversations/{cid}", self._delete_conversation)
        r.add_get("/v1/conversations/{cid}/items", self._list_items)
        r.add_post("/v1/conversations/{cid}/items", self._create_items)
        r.add_get("/v1/conversations/{cid}/items/{iid}", self._get_item)
        r.add_delete("/v1/conversations/{cid}/items/{iid}", self._delete_item)
        r.add_post("/v1/responses", self._create_response)
        r.add_get("/v1/responses/{rid}", self._get_response)
        r.add_post("/v1/chat/completions", self._chat)
        r.add_get("/v1/models", self._list_models)
        r.add_get("/v1/models/{mid}", self._get_model)
        self.add_file_routes(r)
        self.add_tool_routes(r)
        app.on_response_prepare.append(self._add_request_id)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self._base_url = f"http://127.0.0.1:{port}/v1"
        return self._base_url

    async def stop(self) -> None:
        if self.standalone_hold is not None:
            self.standalone_hold.release()  # nothing held outlives the test
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # ---- plumbing -----------------------------------------------------------------------------
    @staticmethod
    def _error(status: int, message: str, *, type: str | None = None, code: str | None = None,
               param: str | None = None, headers: dict[str, str] | None = None,
               body: object | None = None) -> web.Response:
        payload = body if body is not None else error_body(
            message, type=type or default_error_type(status), code=code, param=param)
        return web.json_response(payload, status=status, headers=headers)

    @staticmethod
    async def _add_request_id(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("x-request-id", new_id("req"))

    def _take_fault(self, path: str) -> Fault | None:
        for fault in self._faults:
            if path.startswith(fault.path_prefix):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    @web.middleware
    async def _pipeline(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body: JSON | None = None
        raw = await request.read() if request.can_read_body else b""
        try:
            parsed = json.loads(raw) if raw else None
            body = parsed if isinstance(parsed, dict) else None
        except ValueError:
            parsed = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.calls.append((request.method, request.path))
        self.requests.append(RequestRecord(request.method, request.path, body, headers, dict(request.query)))
        request[_INDEX] = len(self.requests) - 1
        request[_BODY] = body or {}
        fault = self._take_fault(request.path)
        is_turn = request.method == "POST" and request.path == "/v1/responses"
        is_turn = is_turn and not (fault and fault.status)
        if self.latency > 0 and not is_turn:  # a /responses turn sleeps inside its conversation lock window
            await asyncio.sleep(self.latency)
        if fault is not None:
            if fault.delay > 0:
                await asyncio.sleep(fault.delay)
            if fault.status:
                return self._error(fault.status, fault.message, type=fault.type, code=fault.code,
                                   param=fault.param, headers=fault.headers, body=fault.body)
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return self._error(401, "You didn't provide an API key. You need to provide your API key in "
                               "an Authorization header using Bearer auth (i.e. Authorization: Bearer "
                               "YOUR_KEY).")
        if auth[7:].strip() == "bad-key":
            return self._error(401, "Incorrect API key provided: bad-key. You can find your API key at "
                               "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
        if raw and body is None and request.method == "POST" and not request.content_type.startswith("multipart/"):
            return self._error(400, "We could not parse the JSON body of your request.")
        try:
            self._gate(request.method, request.path, request[_BODY])
            self._gate_media(request.method, request.path, request[_BODY])
            cut, request[_EMPTY] = self._take_modes(request.path)
            if cut is not None:
                request[_CUT] = cut
            response = await handler(request)
        except ApiError as e:
            return self._error(e.status, e.message, type=e.type, code=e.code, param=e.param, body=e.body)
        except web.HTTPException as e:
            if e.status in (404, 405):
                return self._error(404, f"Invalid URL ({request.method} {request.path})")
            raise
        if cut is not None and isinstance(response, web.Response) and not response.prepared:
            return await send_cut_json(request, response, cut.abort)
        return response

    def _conversation(self, conv_id: str) -> ConversationState:
        state = self.conversations.get(conv_id)
        if state is None or state.deleted:
            raise conversation_not_found(conv_id)
        return state

    async def _sse(self, request: web.Request, events: Iterable[JSON], *, named: bool) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        cut = request.get(_CUT)
        if cut is not None:
            events = cut_events(list(events))
        if named:
            events = self._end_stream(events)
        for event in events:
            prefix = f"event: {event['type']}\n" if named else ""
            await resp.write(f"{prefix}data: {json.dumps(event)}\n\n".encode())
            if self.stream_delay > 0 and event.get("type") == "response.output_text.delta":
                await asyncio.sleep(self.stream_delay)
            await self._after_event(event)
        if cut is not None and cut.abort and request.transport is not None:
            request.transport.close()  # the chunked body never gets its last chunk
            return resp
        if not named and cut is None:
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    # ---- conversations ------------------------------------------------------------------------
    async def _create_conversation(self, request: web.Request) -> web.Response:
        body, key = request[_BODY], request.headers.get("Idempotency-Key")
        state = self._known_create(key)
        if state is None:
            items = validate_items(body.get("items") or [])
            metadata = validate_metadata(body.get("metadata"))
            state = ConversationState(new_id("conv"), now(), metadata, items, request[_INDEX])
            self.conversations[state.id] = state
            self._remember_create(key, state.id)
        await self._hang_after_create()
        return web.json_response(state.as_json())

    async def _get_conversation(self, request: web.Request) -> web.Response:
        return web.json_response(self._conversation(request.match_info["cid"]).as_json())

    async def _update_conversation(self, request: web.Request) -> web.Response:
        state = self._conversation(request.match_info["cid"])
        state.metadata = validate_metadata(request[_BODY].get("metadata"))
        return web.json_response(state.as_json())

    async def _delete_conversation(self, request: web.Request) -> web.Response:
        state = self._conversation(request.match_info["cid"])
        state.deleted = True  # items are kept, like the real API: see orphan_items
        return web.json_response({"id": state.id, "object": "conversation.deleted", "deleted": True})

    async def _list_items(self, request: web.Request) -> web.Response:
        state = self._conversation(request.match_info["cid"])
        try:
            limit = min(max(int(request.query.get("limit", "20")), 1), 100)
        except ValueError as e:
            raise ApiError(400, "Invalid 'limit': expected an integer.", param="limit") from e
        items = list(state.items) if request.query.get("order", "desc") == "asc" else state.items[::-1]
        after = request.query.get("after")
        if after:
            ids = [i["id"] for i in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        page = items[:limit]
        return web.json_response({"object": "list", "data": page, "has_more": len(items) > limit,
                                  "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None})

    async def _create_items(self, request: web.Request) -> web.Response:
        state = self._conversation(request.match_info["cid"])
        items = validate_items(request[_BODY].get("items"))
        state.items.extend(items)
        return web.json_response({"object": "list", "data": items, "has_more": False,
                                  "first_id": items[0]["id"] if items else None,
                                  "last_id": items[-1]["id"] if items else None})

    def _find_item(self, request: web.Request) -> tuple[ConversationState, JSON]:
        state = self._conversation(request.match_info["cid"])
        iid = request.match_info["iid"]
        for item in state.items:
            if item["id"] == iid:
                return state, item
        raise ApiError(404, f"Item with id '{iid}' not found.")

    async def _get_item(self, request: web.Request) -> web.Response:
        return web.json_response(self._find_item(request)[1])

    async def _delete_item(self, request: web.Request) -> web.Response:
        state, item = self._find_item(request)
        state.items.remove(item)
        return web.json_response(state.as_json())

    # ---- responses ----------------------------------------------------------------------------
    async def _create_response(self, request: web.Request) -> web.StreamResponse:
        body: JSON = request[_BODY]
        conv = body.get("conversation")
        conv_id = conv.get("id") if isinstance(conv, dict) else conv
        if not isinstance(conv_id, str | None):
            raise ApiError(400, "Invalid 'conversation'.", param="conversation")
        conv_id = self._turn_conversation(conv_id)
        if conv_id and self.simulate_locks and conv_id in self._busy:
            raise ApiError(400, f"Another response is already in progress for conversation '{conv_id}'.",
                           code="conversation_locked", param="conversation")
        if conv_id:
            self._busy.add(conv_id)
        try:
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            if not conv_id and self.standalone_hold is not None:
                await self.standalone_hold.wait()
            return await self._run_turn(request, body, conv_id)
        finally:
            if conv_id:
                self._busy.discard(conv_id)

    async def _run_turn(self, request: web.Request, body: JSON, conv_id: str | None) -> web.StreamResponse:
        self._check_model(body.get("model"))
        if conv_id and body.get("previous_response_id"):
            raise ApiError(400, "Mutually exclusive parameters: 'previous_response_id' and 'conversation'.",
                           param="conversation")
        state = self._conversation(conv_id) if conv_id else None
        raw_input = body.get("input", [])
        if isinstance(raw_input, str):
            new_items = [normalize_item({"role": "user", "content": raw_input})]
        elif isinstance(raw_input, list) and all(isinstance(i, dict) for i in raw_input):
            new_items = [normalize_item(i) for i in raw_input]
        else:
            raise ApiError(400, "Invalid 'input': expected a string or an array of input items.",
                           param="input")
        context = (state.items if state else []) + new_items
        truncation = body.get("truncation") or "disabled"
        if self.context_limit is not None and len(context) > self.context_limit:
            if truncation != "auto":
                raise ApiError(400, "Your input exceeds the context window of this model. Please adjust your "
                               "input and try again.", param="input", code="context_length_exceeded")
            dropped = len(context) - self.context_limit
            context = context[dropped:]
            self.truncations.append(Truncation(conv_id or "", dropped, len(context)))
            if state is not None:
                state.truncated_turns += 1
                state.dropped_items += dropped
        user_text = next((item_text(i) for i in reversed(new_items) if i.get("role") == "user"), "")
        before = [dict(i) for i in context[: max(0, len(context) - len(new_items))]]
        empty = request[_EMPTY]
        text = "" if empty else self.reply(user_text, before)
        tools = self._use_tools(body, new_items)  # may refuse (424) before anything is stored
        text = text if tools.reply is None else tools.reply
        instructions = body.get("instructions")
        input_tokens = estimate_tokens(instructions if isinstance(instructions, str) else "",
                                       *(item_text(i) for i in context))
        key = body.get("prompt_cache_key")
        cached = 0
        if isinstance(key, str):
            cached = min(self._cache_keys.get(key, 0), input_tokens)
            self._cache_keys[key] = input_tokens
        usage = response_usage(input_tokens, cached, estimate_tokens(text))
        resp_id, msg_id, created_at = new_id("resp"), new_id("msg"), now()
        output = [*tools.items, *([] if empty or tools.reply == "" else [tools.message(msg_id, text)])]
        final = response_json(resp_id=resp_id, body=body, conv_id=conv_id, created_at=created_at,
                              output=output, usage=usage, status="completed")
        if state is not None:
            state.items.extend([*new_items, *output])
        self.responses[resp_id] = final
        if not body.get("stream"):
            return web.json_response(final)
        created = response_json(resp_id=resp_id, body=body, conv_id=conv_id, created_at=created_at,
                                output=[], usage=None, status="in_progress")
        events = empty_stream_events(created, final) if empty else tools.stream(
            created, final, msg_id, text) if tools.items else response_stream_events(created, final, msg_id, text)
        return await self._sse(request, events, named=True)

    async def _get_response(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        if rid not in self.responses:
            raise ApiError(404, f"Response with id '{rid}' not found.")
        return web.json_response(self.responses[rid])

    # ---- chat completions & models ------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body: JSON = request[_BODY]
        model = self._check_model(body.get("model"))
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise ApiError(400, "Invalid 'messages': expected a non-empty array of messages.",
                           param="messages")
        prompt_tokens = self._check_chat_context(body, messages)
        last_user = max((n for n, m in enumerate(messages) if m.get("role") == "user"), default=len(messages))
        user_text = item_text(messages[last_user]) if last_user < len(messages) else ""
        text = "" if request[_EMPTY] else self.reply(user_text, [dict(m) for m in messages[:last_user]])
        usage = chat_usage(prompt_tokens, estimate_tokens(text))
        cid = new_id("chatcmpl").replace("_", "-", 1)
        if not body.get("stream"):
            return web.json_response(chat_completion(cid, model, text, usage))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await self._sse(request, chat_chunks(cid, model, text, usage if include_usage else None),
                               named=False)

    async def _list_models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [model_json(m) for m in self.models]})

    async def _get_model(self, request: web.Request) -> web.Response:
        return web.json_response(model_json(self._retrieve_model(request.match_info["mid"])))


class FakeOpenAIThread:
    """Runs a :class:`FakeOpenAI` on its own event loop in a daemon thread (for sync clients)."""

    def __init__(self, **kwargs: Any) -> None:
        self.fake = FakeOpenAI(**kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return self.fake.base_url

    def start(self) -> str:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.fake.start(), loop).result(timeout=10)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.fake.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FakeOpenAIThread:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
