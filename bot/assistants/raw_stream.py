"""Streamed answers at the cost of their JSON (issue 19).

``responses.create(stream=True)`` passes the request through the SDK's type-driven transform (about 0.2 ms a
request on this machine, and an identity for what the bot sends: plain JSON, and the Responses parameters have
no aliases or formats) and builds a pydantic model of every event (about 55 µs each; most of an answer's events
are text deltas, read for one field). :func:`open_stream` sends the same request through the same client
(``AsyncOpenAI.post``: its retries, timeouts, headers, error translation and SSE decoding, an ``error`` in the
stream included), and the events arrive as the server's JSON. A text delta is read as it is; the events read
through attributes (an answer's end, a failure) are built as the SDK builds them (:func:`typed`); the others go
to :meth:`bot.assistants.tools.ToolRun.see` as JSON, which it reads alike.
"""

from __future__ import annotations

from typing import Any

from openai import AsyncOpenAI, AsyncStream
from openai._models import construct_type
from openai.types.responses import ResponseStreamEvent

DELTA = "response.output_text.delta"
TYPED = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})
"""The events read through the SDK's attributes (the whole response, the error)."""


async def open_stream(client: AsyncOpenAI, **params: Any) -> AsyncStream[object]:
    """``client.responses.create(**params)`` with ``stream=True`` in ``params``, yielding each event's JSON."""
    return await client.post("/responses", body=params, cast_to=object, options={"security": {"bearer_auth": True}},
                             stream=True, stream_cls=AsyncStream[object])


def text_delta(event: object) -> str | None:
    """The text of a ``response.output_text.delta`` event (None: another event, or one without text)."""
    if isinstance(event, dict) and event.get("type") == DELTA:
        delta = event.get("delta")
        return delta if isinstance(delta, str) else None
    return None


def typed(event: object) -> Any:
    """The SDK's model of an event read through attributes; any other event as it came."""
    if isinstance(event, dict) and event.get("type") in TYPED | {DELTA}:
        return construct_type(type_=ResponseStreamEvent, value=event)
    return event
