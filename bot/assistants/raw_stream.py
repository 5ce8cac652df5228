"""Streamed answers at the cost of their JSON (issue 19).

``responses.create(stream=True)`` passes the request through the SDK's type-driven transform (about 0.2 ms a
request on this machine, and an identity for what the bot sends: plain JSON, and the Responses parameters have
no aliases or formats) and builds a pydantic model of every event (about 55 µs each; most of an answer's events
are text deltas, read for one field; the last one carries the whole response, about 0.9 ms to build).
:func:`open_stream` sends the same request as ``AsyncOpenAI.post`` (its retries, timeouts, headers, error
translation and SSE decoding, an ``error`` in the stream included), and the events arrive as the server's JSON:
straight over aiohttp with the SDK's URL, headers and body, the SDK taking over whatever is not a 2xx event
stream (:mod:`bot.assistants.direct_stream`). A text delta is read as it is; an answer's end
(``response.completed``, once per answer) gets a :class:`JsonView` (:func:`typed`): the SDK's attribute names
over the same JSON, a missing field an ``AttributeError`` as with the SDK's unvalidated models. The rare endings
whose fields the SDK defaults (``response.failed`` without ``error``, ``response.incomplete``, an ``error``
without ``code``: None there) are built as the SDK's models, so they read exactly as before. The others go to
:meth:`bot.assistants.tools.ToolRun.see` as JSON, which reads both alike.

A non-streamed answer (:func:`create_json`) is the same request without ``stream``, through the same
``post``; its body is read as a :class:`ResponseView` instead of the SDK's ``Response`` (the transform and
the model cost about 0.5 ms a turn on this machine): every field the bot reads is read with a default, as a
field left out reads None in the SDK's model, and ``output_text`` is the SDK's property over the same JSON.
"""

from __future__ import annotations

import json
from typing import Any

from openai import AsyncOpenAI, NotGiven, Omit
from openai._models import construct_type
from openai.types.responses import ResponseStreamEvent

from bot.assistants import direct_stream
from bot.assistants.direct_stream import EventStream

DELTA = "response.output_text.delta"
VIEWED = frozenset({"response.completed", DELTA})
"""The events read through a :class:`JsonView` (an answer's end, a delta without text)."""
BUILT = frozenset({"response.incomplete", "response.failed", "error"})
"""The rare endings built as the SDK's models: their optional fields (``error``, ``code``,
``incomplete_details``) read None when the server leaves them out, as the SDK reads them."""


OPTIONS = {"extra_headers": "headers", "extra_query": "params", "extra_body": "extra_json", "timeout": "timeout"}
"""``responses.create``'s keyword arguments that are request options, not body fields (as the SDK routes them)."""


def _request(params: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The body and the SDK's ``RequestOptions`` of ``responses.create(**params)``."""
    body: dict[str, Any] = {}
    options: Any = {"security": {"bearer_auth": True}}  # the SDK's RequestOptions
    for name, value in params.items():
        if isinstance(value, NotGiven | Omit) or (value is None and name in OPTIONS and name != "timeout"):
            continue
        if name in OPTIONS:
            options[OPTIONS[name]] = value
        else:
            body[name] = value
    return body, options


async def open_stream(client: AsyncOpenAI, **params: Any) -> EventStream:
    """``client.responses.create(**params)`` with ``stream=True`` in ``params``, yielding each event's JSON.

    ``extra_headers``, ``extra_query``, ``extra_body`` and ``timeout`` go where the SDK puts them; a parameter
    that is ``NOT_GIVEN`` or ``omit`` is left out, as the SDK leaves it out."""
    body, options = _request(params)
    return await direct_stream.open_stream(client, "/responses", body, options)


async def create_json(client: AsyncOpenAI, **params: Any) -> Any:
    """``client.responses.create(**params)`` (not streamed) read as a :class:`ResponseView` of its JSON.

    As the SDK: a body that is not JSON raises ``json.JSONDecodeError`` (or, sent as another content type,
    comes back as its text), ``null`` is None, and JSON that is not an object comes back as it is."""
    body, options = _request(params)
    data = await client.post("/responses", body=body, cast_to=object, options=options)
    if isinstance(data, str):  # not sent as JSON: the SDK reads it as JSON all the same when it parses
        try:
            data = json.loads(data)
        except ValueError:
            return data
    return ResponseView(data) if isinstance(data, dict) else data


def text_delta(event: object) -> str | None:
    """The text of a ``response.output_text.delta`` event (None: another event, or one without text)."""
    if isinstance(event, dict) and event.get("type") == DELTA:
        delta = event.get("delta")
        return delta if isinstance(delta, str) else None
    return None


class JsonView:
    """An event's JSON read through attributes, as the SDK's models of it are read."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        try:
            return _view(self._data[name])
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"JsonView({self._data!r})"


class ResponseView(JsonView):
    """A non-streamed response's JSON, with the SDK's ``Response.output_text``."""

    __slots__ = ()

    @property
    def output_text(self) -> str:
        """As the SDK's property reads its constructed model: a field left out is None there (no ``output``,
        or a message without ``content``: a TypeError; an item without ``type``: not a message)."""
        texts: list[str] = []
        for output in _field(self._data, "output"):
            if _field(output, "type") == "message":
                for content in _field(output, "content"):
                    if _field(content, "type") == "output_text":
                        text = _field(content, "text")
                        if text is not None:
                            texts.append(text)
        return "".join(texts)


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else getattr(value, name)


def _view(value: Any) -> Any:
    if isinstance(value, dict):
        return JsonView(value)
    if isinstance(value, list):
        return [_view(v) for v in value]
    return value


def typed(event: object) -> Any:
    """An event read through attributes: an answer's end or an odd delta as a :class:`JsonView`, a failure or an
    incomplete answer as the SDK's model; any other event as it came."""
    if isinstance(event, dict):
        kind = event.get("type")
        if kind in VIEWED:
            return JsonView(event)
        if kind in BUILT:
            return construct_type(type_=ResponseStreamEvent, value=event)
    return event
