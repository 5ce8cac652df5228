"""Streamed answers at the cost of their JSON (issue 19).

``responses.create(stream=True)`` passes the request through the SDK's type-driven transform (about 0.2 ms a
request on this machine, and an identity for what the bot sends: plain JSON, and the Responses parameters have
no aliases or formats) and builds a pydantic model of every event (about 55 µs each; most of an answer's events
are text deltas, read for one field; the last one carries the whole response, about 0.9 ms to build).
:func:`open_stream` sends the same request through the same client (``AsyncOpenAI.post``: its retries, timeouts,
headers, error translation and SSE decoding, an ``error`` in the stream included), and the events arrive as the
server's JSON. A text delta is read as it is; an answer's end (``response.completed``, once per answer) gets a
:class:`JsonView` (:func:`typed`): the SDK's attribute names over the same JSON, a missing field an
``AttributeError`` as with the SDK's unvalidated models. The rare endings whose fields the SDK defaults
(``response.failed`` without ``error``, ``response.incomplete``, an ``error`` without ``code``: None there) are
built as the SDK's models, so they read exactly as before. The others go to
:meth:`bot.assistants.tools.ToolRun.see` as JSON, which reads both alike.
"""

from __future__ import annotations

from typing import Any

from openai import AsyncOpenAI, AsyncStream, NotGiven, Omit
from openai._models import construct_type
from openai.types.responses import ResponseStreamEvent

DELTA = "response.output_text.delta"
VIEWED = frozenset({"response.completed", DELTA})
"""The events read through a :class:`JsonView` (an answer's end, a delta without text)."""
BUILT = frozenset({"response.incomplete", "response.failed", "error"})
"""The rare endings built as the SDK's models: their optional fields (``error``, ``code``,
``incomplete_details``) read None when the server leaves them out, as the SDK reads them."""


OPTIONS = {"extra_headers": "headers", "extra_query": "params", "extra_body": "extra_json", "timeout": "timeout"}
"""``responses.create``'s keyword arguments that are request options, not body fields (as the SDK routes them)."""


async def open_stream(client: AsyncOpenAI, **params: Any) -> AsyncStream[object]:
    """``client.responses.create(**params)`` with ``stream=True`` in ``params``, yielding each event's JSON.

    ``extra_headers``, ``extra_query``, ``extra_body`` and ``timeout`` go where the SDK puts them; a parameter
    that is ``NOT_GIVEN`` or ``omit`` is left out, as the SDK leaves it out."""
    body: dict[str, Any] = {}
    options: Any = {"security": {"bearer_auth": True}}  # the SDK's RequestOptions
    for name, value in params.items():
        if isinstance(value, NotGiven | Omit) or (value is None and name in OPTIONS and name != "timeout"):
            continue
        if name in OPTIONS:
            options[OPTIONS[name]] = value
        else:
            body[name] = value
    return await client.post("/responses", body=body, cast_to=object, options=options, stream=True,
                             stream_cls=AsyncStream[object])


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
