"""The loopback fakes of the front-door bench, with the moments a user would notice stamped on them.

Every fake keeps the clock of the process they share (``time.monotonic``), so the load driver
(:mod:`bench.front_driver`) reads, for each message it sent:

* when the assistant put out the answer's first text (:class:`TimedOpenAI`: the first streamed
  ``response.output_text.delta``, or the whole JSON body of a non-streamed turn);
* when the platform first showed text of the answer, and when it showed the complete answer
  (:class:`TimedSlack`: the bot's ``chat.*`` calls; :class:`TimedDiscord`: its message posts and edits).

Answers are matched to messages by text: the fake OpenAI echoes (``echo: <what the user wrote>``, followed by
filler words under a paced stream: :meth:`~bench.fake_proc.BenchFake.answer`) and every message of a run is
unique. One conversation at a time per channel: a user sends the next message only when the previous answer is
complete, so :class:`Watch` keys by channel.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bench.fake_proc import BenchFake
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack

JSON = dict[str, Any]

SLACK_CHAT = ("chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream", "chat.stopStream")
"""Slack calls that show an answer (what the bench counts per answer, with ``assistant.threads.setStatus``)."""


@dataclass
class Expected:
    """One message on its way: what its complete answer reads, and when the user saw what."""

    text: str
    sent: float
    acked: float | None = None
    visible: float | None = None
    done: float | None = None
    last_seen: str = ""
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class Watch:
    """The answers the driver waits for, one per channel at a time."""

    def __init__(self) -> None:
        self.pending: dict[str, Expected] = {}
        self.strays = 0
        """Texts shown in a watched channel that were not part of the answer expected there."""
        self.completed: dict[str, str] = {}
        """Per channel, the text of the answer completed last: shown again, it is that answer's final render
        (Discord's final edit adds the feedback buttons under a text already complete), not a stray."""

    def expect(self, channel: str, text: str) -> Expected:
        entry = Expected(text, time.monotonic())
        self.pending[channel] = entry
        return entry

    def seen(self, channel: str, text: str, *, complete: bool) -> None:
        """The platform shows ``text`` in ``channel`` (``complete``: the message is no longer streaming)."""
        entry = self.pending.get(channel)
        if entry is None or not text.strip():
            return
        now = time.monotonic()
        entry.last_seen = text
        shown = text.strip()
        same = min(len(shown), len(entry.text), 24)  # past "echo: ", into the question's own tag
        if shown[:same] != entry.text[:same]:  # e.g. a late edit of the previous answer in the channel
            if text != self.completed.get(channel):
                self.strays += 1
            return
        if entry.visible is None:
            entry.visible = now
        if complete and text == entry.text:
            entry.done = now
            entry.finished.set()
            del self.pending[channel]
            self.completed[channel] = text


class TimedOpenAI(BenchFake):
    """The bench's fake OpenAI, stamping when each answer's first text left it (keyed by the answer)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.first_output: dict[str, float] = {}

    def _events(self, events: Iterable[JSON]) -> Iterator[JSON]:
        return self._stamped(super()._events(events))  # stamped as each event goes out (a paced one too)

    def _stamped(self, events: Iterable[JSON]) -> Iterator[JSON]:
        first: float | None = None
        for event in events:
            kind = event.get("type")
            if first is None and kind == "response.output_text.delta" and event.get("delta"):
                first = time.monotonic()
            elif kind == "response.output_text.done" and first is not None:
                self.first_output[str(event.get("text"))] = first
            yield event

    async def _run_turn(self, request: web.Request, body: JSON, conv_id: str | None) -> web.StreamResponse:
        response = await super()._run_turn(request, body, conv_id)
        if isinstance(response, web.Response) and not body.get("stream") and response.body is not None:
            sent = json.loads(bytes(response.body))  # type: ignore[arg-type]
            for item in sent.get("output") or []:
                for part in item.get("content") or []:
                    if part.get("type") == "output_text":
                        self.first_output[str(part.get("text"))] = time.monotonic()
        return response


class TimedSlack(FakeSlack):
    """The fake Slack, telling the :class:`Watch` what each of the bot's ``chat.*`` calls shows."""

    def __init__(self, watch: Watch) -> None:
        super().__init__()
        self.watch = watch

    def _answer(self, method: str, p: JSON) -> JSON:
        body = super()._answer(method, p)
        if method in SLACK_CHAT and body.get("ok"):
            msg = self.messages.get(str(body.get("ts") or p.get("ts")))
            if msg is not None:
                self.watch.seen(msg.channel, msg.text, complete=not msg.streaming)
        return body

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for call in self.calls:
            if not call.refused:
                out[call.method] = out.get(call.method, 0) + 1
        return out


class TimedDiscord(FakeDiscord):
    """The fake Discord, telling the :class:`Watch` what each message post and edit shows."""

    def __init__(self, watch: Watch) -> None:
        super().__init__()
        self.watch = watch

    async def _create_message(self, channel_id: str, body: Any) -> web.Response:
        response = await super()._create_message(channel_id, body)
        self.watch.seen(channel_id, str((body or {}).get("content") or ""), complete=True)
        return response

    async def _edit_message(self, message_id: str, body: Any) -> web.Response:
        response = await super()._edit_message(message_id, body)
        msg = self.messages.get(message_id)
        if msg is not None:
            self.watch.seen(str(msg["channel_id"]), str(msg.get("content") or ""), complete=True)
        return response

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for call in self.calls:
            if call.refused:
                continue
            route = f"{call.method} {_route(call.path)}"
            out[route] = out.get(route, 0) + 1
        return out


def _route(path: str) -> str:
    """``/channels/123/messages/456`` -> ``/channels/{id}/messages/{id}``."""
    return "/".join("{id}" if part.isdigit() else part for part in path.split("/"))
