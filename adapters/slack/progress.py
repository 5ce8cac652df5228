"""Progress while a Slack answer is worked out: tool tasks in the stream, and the status under the thread.

* :class:`Tasks`: tool progress in a streamed answer, ``task_update`` chunks ("searching the web…"). Each tool
  status opens a task; the next status, or the answer's next text, completes it. Pure bookkeeping:
  :class:`~adapters.slack.reply.SlackReply` sends the chunks.
* :class:`Status`: ``assistant.threads.setStatus`` under the thread being answered: "thinking…" with Slack's
  rotating ``loading_messages`` while the model works, cleared at the end. In DM (agent and assistant) threads
  it also carries the tool progress; in channel threads it is only the loading line, where the workspace allows
  it (:class:`ChannelStatus` remembers the ones that refused). A status is a hint: it waits at most
  :data:`STATUS_WITHIN` for Slack's rate limits, and a failure is logged at DEBUG and forgotten.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.limits import DELIVERY_ERRORS, Delivery, SlackCalls, Unsupported, outcome_unknown
from adapters.slack.parse import Target

log = logging.getLogger("threadkeeper.slack")

THINKING = "thinking…"
LOADING_MESSAGES: tuple[str, ...] = ("Reading your message…", "Thinking it through…", "Putting an answer together…",
                                     "Checking the details…", "Almost there…")
"""What Slack rotates under the thread while the model works (Slack takes at most 10)."""
STATUS_WITHIN = 3.0
"""How long setting or clearing the status may wait for Slack's rate limits (it is only a hint)."""


class ChannelStatus(Unsupported):
    """Teams whose workspace refused a status in a channel thread."""

    def __init__(self) -> None:
        super().__init__("assistant status in channel threads")


class Status:
    """The status line under one thread while it is answered."""

    def __init__(self, client: AsyncWebClient, calls: SlackCalls, target: Target, digest: str, *,
                 channels: ChannelStatus | None = None) -> None:
        self.client = client
        self.calls = calls
        self.target = target
        self.digest = digest
        self.channels = channels
        """Set for a channel thread: its refusals are remembered for the team."""
        self.shown = False

    async def begin(self) -> None:
        """Show "thinking…" with the rotating loading messages."""
        if self.channels is None or self.channels.enabled(self.target.team):
            self.shown = True  # from the call on: cancelled midway (shutdown), it may have been shown all the same
            self.shown = await self._set(THINKING, list(LOADING_MESSAGES))

    async def show(self, status: str) -> None:
        """Tool progress on the status line (DM threads)."""
        was, self.shown = self.shown, True
        self.shown = await self._set(status) or was

    async def clear(self) -> None:
        if self.shown:
            self.shown = False
            await self._set("")

    async def _set(self, status: str, loading: list[str] | None = None) -> bool:
        """Set the status; whether it may have been set (done, or its outcome unknown: a timeout)."""
        channel, thread = self.target.channel, self.target.thread_ts or ""
        delivery = Delivery(self.target.team, self.digest, time.monotonic() + STATUS_WITHIN)
        try:
            await self.calls.urgent(delivery, "assistant.threads.setStatus", lambda: (
                self.client.assistant_threads_setStatus(channel_id=channel, thread_ts=thread, status=status,
                                                        loading_messages=loading)), channel=channel)
        except DELIVERY_ERRORS as exc:
            if isinstance(exc, SlackApiError) and self.channels is not None:
                self.channels.refused(self.target.team, str(exc.response.get("error", "")))
            log.debug("could not set the assistant status: %s", exc)
            return outcome_unknown(exc)
        return True


class Tasks:
    """The tasks of one streamed answer."""

    def __init__(self) -> None:
        self.count = 0
        """Tasks opened so far (each gets its own id)."""
        self.open = False
        """The last one is still in progress."""

    def _chunk(self, status: str, title: str = "") -> dict[str, str]:
        chunk = {"type": "task_update", "id": f"tk-tool-{self.count}", "status": status}
        return {**chunk, "title": title} if title else chunk

    def begin(self, title: str) -> list[dict[str, str]]:
        """Chunks that complete the task in progress, if any, and open one for ``title``."""
        done = [self._chunk("complete")] if self.open else []
        self.count += 1
        self.open = True
        return [*done, self._chunk("in_progress", title)]

    def text(self, text: str) -> dict[str, Any]:
        """Arguments of an append (or stop) that carries ``text``, completing the open task first; call
        :meth:`done` once Slack took them."""
        if not self.open:
            return {"markdown_text": text} if text else {}
        return {"chunks": [self._chunk("complete"), *([{"type": "markdown_text", "text": text}] if text else [])]}

    def done(self) -> None:
        self.open = False
