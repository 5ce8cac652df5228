"""Opt-in behaviours of real OpenAI-compatible servers, for the loopback fake of the OpenAI API.

:class:`ServerModes` is mixed into :class:`tests.fakes.openai_server.FakeOpenAI`. Every mode is off
by default, so the fake keeps answering like api.openai.com until a test switches one on; each mode's
docstring names the kind of server it imitates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Literal

from aiohttp import web

from .openai_state import (
    JSON,
    ApiError,
    ConversationState,
    conversation_not_found,
    estimate_tokens,
    item_text,
    model_not_found,
)

RefusalShape = Literal["openai", "detail"]
UnknownModelShape = Literal["openai404", "compat400", "ignore"]
StreamEnd = Literal["response.failed", "response.incomplete", "error", "bare"]

ANY: Final = object()  # refuse_param(value=ANY): the parameter is refused whatever its value
NOT_FOUND: Final[JSON] = {"detail": "Not Found"}  # FastAPI's body for a route it does not have
REFUSABLE = frozenset({"/v1/responses", "/v1/chat/completions", "/v1/conversations"})  # POST bodies checked
TEXT_PATHS = frozenset({"/v1/responses", "/v1/chat/completions"})  # where empty_next applies
LOCKED_MESSAGE: Final = ("Another process is currently operating on this conversation. "
                         "Please retry in a few seconds.")


@dataclass
class Refusal:
    """One parameter a server will not take (see :meth:`ServerModes.refuse_param`)."""

    param: str
    status: int
    shape: RefusalShape
    value: object = ANY

    def matches(self, body: JSON) -> bool:
        return self.param in body and (self.value is ANY or body[self.param] == self.value)

    def error(self, body: JSON) -> ApiError:
        sent = body[self.param]
        if self.shape == "detail":
            what = (f"Truncation mode '{sent}'" if self.param == "truncation"
                    else f"Parameter '{self.param}'" if self.value is ANY
                    else f"Value {sent!r} for parameter '{self.param}'")
            message = f"Error code: {self.status} - {what} is not supported"
            return ApiError(self.status, message, body={"detail": message})
        if self.value is ANY:
            return ApiError(self.status, f"Unsupported parameter: '{self.param}' is not supported with this "
                            "model.", param=self.param, code="unsupported_parameter")
        return ApiError(self.status, f"Unsupported value: '{self.param}' does not support {sent!r} with this "
                        "model.", param=self.param, code="unsupported_value")


@dataclass
class PathRule:
    """A behaviour for the next ``times`` requests whose path starts with ``path_prefix``."""

    path_prefix: str
    times: int
    abort: bool = False  # truncate_next only: drop the connection instead of ending the body cleanly


def take_rule(rules: list[PathRule], path: str) -> PathRule | None:
    for rule in rules:
        if path.startswith(rule.path_prefix):
            rule.times -= 1
            if rule.times <= 0:
                rules.remove(rule)
            return rule
    return None


def chat_prompt_tokens(messages: list[JSON]) -> int:
    """The fake's prompt size for a chat request: ``len(content) // 4 + 1`` per message.

    Content parts are joined (see ``item_text``); roles, names and tool definitions count nothing. This is
    the same estimate the fake reports as ``usage.prompt_tokens``, so a test can size a prompt exactly.
    """
    return estimate_tokens(*(item_text(m) for m in messages))


def exceed_context_error(n_prompt: int, n_ctx: int) -> ApiError:
    """llama-server's refusal of a prompt larger than its slot's context (context shift is off by default)."""
    message = (f"request ({n_prompt} tokens) exceeds the available context size ({n_ctx} tokens), "
               "try increasing it")
    return ApiError(400, message, body={"error": {"code": 400, "message": message,
                                                  "type": "exceed_context_size_error",
                                                  "n_prompt_tokens": n_prompt, "n_ctx": n_ctx}})


def compat_model_not_found(model: str) -> ApiError:
    message = f"model '{model}' not found"
    return ApiError(400, message, body={"error": {"message": message, "type": "invalid_request_error"}})


def route_not_found() -> ApiError:
    return ApiError(404, "Not Found", body=dict(NOT_FOUND))


def cut_events(events: list[JSON]) -> list[JSON]:
    """The first half of a stream's events (at least one): what arrives before the connection ends."""
    return events[: max(1, len(events) // 2)]


async def send_cut_json(request: web.Request, response: web.Response, abort: bool) -> web.StreamResponse:
    """Send the first half of a JSON answer (see :meth:`ServerModes.truncate_next`)."""
    raw = bytes(response.body or b"")  # type: ignore[arg-type]  # json_response bodies are bytes
    half = raw[: len(raw) // 2]
    if not abort:
        return web.Response(body=half, status=response.status, content_type="application/json")
    cut = web.StreamResponse(status=response.status, headers={"Content-Type": "application/json"})
    cut.content_length = len(raw)
    await cut.prepare(request)
    await cut.write(half)
    if request.transport is not None:
        request.transport.close()  # short of Content-Length; aiohttp's write_eof then meets a closed socket
    return cut


def end_events(events: list[JSON], kind: StreamEnd, error: JSON | None) -> list[JSON]:
    """A turn's stream ending in ``kind`` instead of ``response.completed`` (:meth:`ServerModes.end_stream_next`)."""
    final = events[-1]["response"]
    if kind == "response.incomplete":
        response = {**final, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
        return [*events[:-1], {**events[-1], "type": kind, "response": response}]
    if kind == "bare":  # null deltas between the text's, and a completed event without its response
        nulls = [{**e, "delta": None} for e in events if e.get("type") == "response.output_text.delta"][:1]
        return [*nulls, *events[:-1], {k: v for k, v in events[-1].items() if k != "response"}]
    if kind == "response.failed":
        response = {k: v for k, v in final.items() if k != "error"} | {"status": "failed", "output": [], "usage": None}
        end: JSON = {"type": kind, "response": response if error is None else {**response, "error": error}}
    else:
        end = {"type": "error", "param": None, **(error or {})}
    before = [e for e in events[:-1] if not _about_text(e)]  # the tools' events stay: they ran before the failure
    return [{**e, "sequence_number": seq} for seq, e in enumerate([*before, end])]


def _about_text(event: JSON) -> bool:
    item = event.get("item")
    return (str(event["type"]).startswith(("response.output_text", "response.content_part"))
            or (isinstance(item, dict) and item.get("type") == "message"))


def empty_stream_events(created: JSON, final: JSON) -> Iterator[JSON]:
    """The Responses API events of a turn that produced no output item at all."""
    events: list[JSON] = [{"type": "response.created", "response": created},
                          {"type": "response.in_progress", "response": created},
                          {"type": "response.completed", "response": final}]
    for seq, event in enumerate(events):
        yield {**event, "sequence_number": seq}


class ServerModes:
    """Behaviours of real OpenAI-compatible servers; ``FakeOpenAI`` calls :meth:`_init_modes`.

    Plain attributes (all off by default):

    * ``chat_context_size`` (``None``): llama-server's context window for ``/v1/chat/completions``.
      When :func:`chat_prompt_tokens` + ``max_tokens`` (or ``max_completion_tokens``) exceeds it, the
      request answers 400 ``exceed_context_size_error`` before any stream byte, with ``n_prompt_tokens``
      and ``n_ctx`` like llama-server. (llama-server itself only compares the prompt with ``n_ctx`` and
      stops generating at the limit; counting ``max_tokens`` here is stricter on purpose.)
      ``last_chat_prompt_tokens`` is the estimate of the latest chat request, refused or not.
    * ``unknown_model_shape``: ``"openai404"`` (api.openai.com: 404 ``model_not_found``), ``"compat400"``
      (compatible servers and gateways that answer 400 with only a message and a type, no code) or
      ``"ignore"`` (single-model servers such as llama-server, which answer under any model name).
    * ``model_retrieve_404``: ``GET /v1/models/{id}`` answers FastAPI's 404 ``{"detail": "Not Found"}``
      even for listed models, like vLLM, which serves only the list route.
    * ``conversations_api`` (``True``): ``False`` imitates a server with a Responses API but no
      Conversations API (e.g. vLLM): every ``/v1/conversations*`` route answers 404
      ``{"detail": "Not Found"}``, and ``/v1/responses`` with ``conversation`` answers according to
      ``conversation_param_status``: 400 (``unsupported_parameter``, recorded in ``refused``), 404
      (the conversation is not found) or ``None`` (the parameter is ignored, as servers whose request
      models allow unknown fields do: the turn runs without history and ``conversation`` is null).
    * ``honour_idempotency``: ``POST /v1/conversations`` with an ``Idempotency-Key`` header it has seen
      before returns that conversation again instead of creating one. Off, the header is ignored, as
      most servers (and OpenAI's own SDK, which never sends it) do.
    * ``always_locked``: every ``/v1/responses`` turn on a conversation answers 400
      ``conversation_locked`` (param null), as the real API does while a stuck run holds the lock.
    """

    conversations: dict[str, ConversationState]
    models: list[str]

    def _init_modes(self) -> None:
        self.refused: list[tuple[str, str]] = []  # (path, param) of requests refused by refuse_param
        self.chat_context_size: int | None = None
        self.last_chat_prompt_tokens: int | None = None
        self.unknown_model_shape: UnknownModelShape = "openai404"
        self.model_retrieve_404 = False
        self.conversations_api = True
        self.conversation_param_status: int | None = 400
        self.honour_idempotency = False
        self.always_locked = False
        self._refusals: list[Refusal] = []
        self._hangs: list[float] = []
        self._cuts: list[PathRule] = []
        self._empties: list[PathRule] = []
        self._idempotency: dict[str, str] = {}  # Idempotency-Key -> conversation id
        self._ends: list[tuple[StreamEnd, JSON | None]] = []

    # ---- switches ----------------------------------------------------------------------------
    def refuse_param(self, name: str, *, status: int = 400, shape: RefusalShape | None = None,
                     value: object = ANY) -> None:
        """Refuse requests whose body carries top-level ``name`` (optionally only with ``value``).

        Checked on POST ``/v1/responses``, ``/v1/chat/completions`` and ``/v1/conversations``; a refused
        request changes nothing and is recorded in ``refused``. Shapes:

        * ``"openai"`` (default below 500): api.openai.com's 400 for a parameter a model does not take,
          ``{"error": {"message": "Unsupported parameter: 'truncation' ...", "type": "invalid_request_error",
          "param": "truncation", "code": "unsupported_parameter"}}`` (``unsupported_value`` with ``value``).
        * ``"detail"`` (default from 500): a FastAPI gateway that relays its upstream's failure as
          ``HTTPException(status, detail=str(exc))``, e.g. ``{"detail": "Error code: 500 - Truncation mode
          'auto' is not supported"}``; the message always names the parameter.
        """
        chosen: RefusalShape = shape or ("detail" if status >= 500 else "openai")
        self._refusals.append(Refusal(name, status, chosen, value))

    def hang_on_create(self, seconds: float, times: int = 1) -> None:
        """The next ``times`` ``POST /v1/conversations`` store the conversation, then wait ``seconds``.

        Imitates a server (or a proxy in front of it) that commits the create and is slow to answer, so a
        client with a shorter timeout gives up while the conversation exists: retrying creates a second one
        unless ``honour_idempotency`` is on and the client sends an ``Idempotency-Key``.
        """
        self._hangs.extend([seconds] * times)

    def truncate_next(self, path_prefix: str, times: int = 1, *, abort: bool = False) -> None:
        """The next ``times`` requests under ``path_prefix`` get their answer cut in the middle.

        Like a proxy or load balancer that gives up mid-body: the operation itself has happened (a request
        that fails anyway uses up a turn and gets its error whole). A JSON
        answer is 200 ``application/json`` with the first half of the body; a stream sends the first half of
        its events and ends without ``response.completed`` / ``[DONE]``. With ``abort`` the connection is
        dropped instead: a JSON body falls short of its Content-Length, a stream's chunked body never ends.
        """
        self._cuts.append(PathRule(path_prefix, times, abort))

    def empty_next(self, path_prefix: str, times: int = 1) -> None:
        """The next ``times`` ``/v1/responses`` or ``/v1/chat/completions`` under ``path_prefix`` get no text.

        Responses: ``output`` is ``[]`` (only the input is added to the conversation); chat completions:
        ``content`` is ``""``. Small local models and filtering gateways do this.
        """
        self._empties.append(PathRule(path_prefix, times))

    def end_stream_next(self, kind: StreamEnd, *, error: JSON | None = None, times: int = 1) -> None:
        """The next ``times`` streamed ``/v1/responses`` turns end in ``kind`` instead of ``response.completed``.

        * ``"response.failed"``: after the events before the answer's text (created, in progress, the tools'),
          the response with ``status: failed``, no output and ``error`` (``{"code": ..., "message": ...}``);
          with ``error=None`` the field is left out, as some compatible servers do (the SDK's model defaults it
          to None).
        * ``"response.incomplete"``: the answer's text, then the response with ``status: incomplete`` and
          ``incomplete_details.reason`` ``max_output_tokens`` (a model that hit its output limit).
        * ``"error"``: after the same events, an ``error`` event with ``error``'s fields (``message``,
          ``code``); a field not given is left out (the SDK's model defaults ``code`` to None).
        * ``"bare"``: a text delta of ``null`` first, then the turn's events, and ``response.completed``
          without its ``response`` (garbage some gateways send).
        """
        self._ends.extend([(kind, error)] * times)

    def _end_stream(self, events: Iterable[JSON]) -> Iterable[JSON]:
        return end_events(list(events), *self._ends.pop(0)) if self._ends else events

    @property
    def created_count(self) -> int:
        """Conversations created through the API (not seeded by a test), deleted ones included."""
        return sum(1 for c in self.conversations.values() if c.created_by_request_index >= 0)

    # ---- hooks the server calls --------------------------------------------------------------
    def _take_modes(self, path: str) -> tuple[PathRule | None, bool]:
        """The truncate_next rule and whether an empty_next rule apply to a request about to be handled."""
        empty = path in TEXT_PATHS and take_rule(self._empties, path) is not None
        return take_rule(self._cuts, path), empty

    def _gate(self, method: str, path: str, body: JSON) -> None:
        """Raise the error a real server would answer before doing anything with this request."""
        if not self.conversations_api and path.startswith("/v1/conversations"):
            raise route_not_found()
        if method != "POST" or path not in REFUSABLE:
            return
        refusals = list(self._refusals)
        if not self.conversations_api and path == "/v1/responses" and self.conversation_param_status == 400:
            refusals.append(Refusal("conversation", 400, "openai"))
        for refusal in refusals:
            if refusal.matches(body):
                self.refused.append((path, refusal.param))
                raise refusal.error(body)

    def _turn_conversation(self, conv_id: str | None) -> str | None:
        """The conversation a /v1/responses turn runs on, after the no-Conversations and lock modes."""
        if conv_id and not self.conversations_api:
            if self.conversation_param_status is not None:
                raise conversation_not_found(conv_id)
            return None  # ignored like any unknown field
        if conv_id and self.always_locked:
            raise ApiError(400, LOCKED_MESSAGE, code="conversation_locked")
        return conv_id

    def _retrieve_model(self, model_id: str) -> str:
        if self.model_retrieve_404:
            raise route_not_found()
        return self._check_model(model_id)

    def _check_model(self, model: object) -> str:
        if self.unknown_model_shape == "ignore" or (isinstance(model, str) and model in self.models):
            return str(model)
        if self.unknown_model_shape == "compat400":
            raise compat_model_not_found(str(model))
        raise model_not_found(str(model))

    def _check_chat_context(self, body: JSON, messages: list[JSON]) -> int:
        """Record and return the prompt estimate; raise llama-server's overflow error when it does not fit."""
        tokens = self.last_chat_prompt_tokens = chat_prompt_tokens(messages)
        reserve = body.get("max_tokens") or body.get("max_completion_tokens") or 0
        if self.chat_context_size is not None and tokens + int(reserve) > self.chat_context_size:
            raise exceed_context_error(tokens, self.chat_context_size)
        return tokens

    def _known_create(self, key: str | None) -> ConversationState | None:
        """The conversation an earlier create with this Idempotency-Key made, when keys are honoured."""
        if not self.honour_idempotency or not key or key not in self._idempotency:
            return None
        return self.conversations.get(self._idempotency[key])

    def _remember_create(self, key: str | None, conv_id: str) -> None:
        if self.honour_idempotency and key:
            self._idempotency[key] = conv_id

    async def _hang_after_create(self) -> None:
        if self._hangs:
            await asyncio.sleep(self._hangs.pop(0))
