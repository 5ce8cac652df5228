"""Rendering one answer into Slack while it streams in.

Two ways, chosen per message:

* **stream**: Slack's chat streaming API (``chat.startStream`` / ``appendStream`` / ``stopStream``).
  Slack renders the model's Markdown itself. Streams are replies, so this needs a thread to answer in;
  a workspace that refuses the API (``not_allowed``, ``unknown_method``, ...) is remembered in
  :class:`StreamSupport` and not asked again.
* **post**: a message posted at the first delta and edited with ``chat.update`` at most once per
  ``interval`` (Slack rate-limits edits), then the final text rendered with ``markdown_to_mrkdwn``
  and split with ``split_text`` into as many messages as it needs.

Answers longer than :data:`~adapters.slack.mrkdwn.SLACK_TEXT_LIMIT` end in the post form even when streaming:
the stream shows the beginning while the model writes, then becomes the first of the split messages.

Deltas never wait for Slack: :meth:`SlackReply.on_delta` only appends to a buffer and wakes the
reply's :class:`~adapters.kit.reply.Pump`, which sends what has accumulated at most once per ``interval``.

Under Slack's rate limits (:mod:`adapters.slack.limits`) the streamed edits and appends are a luxury,
skipped when the workspace's lane is busy (the next one carries their text); the final text is urgent:
it waits for its turn, is retried after ``Retry-After`` and, if it still cannot get through by the
deadline, the failure is logged as an ERROR with the thread's digest. Parts of a long answer go one
after another, in order. A post whose outcome is unknown (a timeout) is never made again with the
same text.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.kit.pacing import LocalLanes, Pacer
from adapters.kit.reply import Pump
from adapters.kit.text import split_text
from adapters.slack.limits import (
    DELIVERY_ERRORS,
    SEND_ERRORS,
    Delivery,
    SlackCalls,
    Undelivered,
    Unsupported,
    outcome_unknown,
)
from adapters.slack.mrkdwn import SLACK_TEXT_LIMIT, markdown_to_mrkdwn
from adapters.slack.parse import Target
from adapters.slack.progress import ChannelStatus, Status, Tasks

log = logging.getLogger("threadkeeper.slack")

Call = Callable[[], Awaitable[AsyncSlackResponse]]


class StreamSupport(Unsupported):
    """Teams whose workspace refused the chat streaming API (``not_allowed``, ``unknown_method``, ...)."""

    def __init__(self) -> None:
        super().__init__("chat streaming")


class SlackReply:
    """One answer on its way into one Slack channel or thread (a :class:`~adapters.kit.reply.Reply`)."""

    def __init__(
        self,
        client: AsyncWebClient,
        target: Target,
        *,
        streams: StreamSupport,
        calls: SlackCalls | None = None,
        digest: str = "-",
        interval: float = 1.0,
        show_status: bool = False,
        loading: ChannelStatus | None = None,
        limit: int = SLACK_TEXT_LIMIT,
        final_blocks: Callable[[str | None], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.client = client
        self.target = target
        self.streams = streams
        self.calls = calls or SlackCalls(Pacer(LocalLanes()))
        self.digest = digest
        self.delivery = Delivery(target.team, digest)
        """All of this answer's calls; its deadline is set when the final text is ready."""
        self.limit = limit
        self.final_blocks = final_blocks
        """Blocks the answer's last message ends with (the feedback buttons): given its text, or None on a stream."""
        self._show_status = show_status and target.thread_ts is not None
        self.status = Status(client, self.calls, target, digest, channels=None if show_status else loading) \
            if (show_status or loading is not None) and target.thread_ts else None
        """The status under the thread: DM threads (with tool progress), or channel threads' loading line."""
        self.mode = "stream" if target.thread_ts and streams.enabled(target.team) else "post"
        self._text = ""
        self._stream_ts: str | None = None
        self._streamed = 0
        self._ts: str | None = None
        self._shown = ""
        self._unknown: set[str] = set()
        """Texts of creating calls whose outcome is unknown (timed out): never sent again."""
        self._tool = self._tool_shown = ""
        """Tool progress ("searching the web…"), and what of it Slack shows (:meth:`on_status`)."""
        self.tasks = Tasks()
        """Stream mode: the ``task_update`` chunks of the tool statuses."""
        self._interval = interval
        self._pump = Pump(self._push, interval=interval, errors=SEND_ERRORS, log=log, name="slack-reply")

    # ---- lifecycle ---------------------------------------------------------------------------
    async def begin(self) -> None:
        """Show "thinking…" (and Slack's rotating loading messages) under the thread while the assistant works."""
        if self.status is not None:
            await self.status.begin()

    async def on_delta(self, delta: str) -> None:
        self._text += delta
        self._tool = ""  # the answer says more: the tool line is done
        self._pump.wake()

    async def on_status(self, status: str) -> None:
        """Tool progress: the AI-app status line in an assistant thread; else a ``task_update`` in the
        stream, or a line under the text shown so far. Shown by the pump, never waited for here."""
        self._tool = status
        self._pump.wake()

    async def finish(self, text: str) -> None:
        """The final answer: complete, rendered, split; replaces whatever the stream showed."""
        await self._pump.stop()
        if not text.strip():
            await self.discard()
            return
        self._set_deadline()
        try:
            await self._final(text)
        except DELIVERY_ERRORS as exc:
            log.error("the answer for %s was not delivered in full: %s", self.digest, exc)
            return
        if self.delivery.refused and self.calls.metrics is not None:
            self.calls.metrics.answers_late.labels("slack").inc()

    async def fail(self, sentence: str) -> None:
        """One short sentence in the thread; whatever already streamed stays as it is."""
        await self._pump.stop()
        self._set_deadline()
        try:
            if self._stream_ts is not None:
                await self._stop_stream("")
            await self._post(sentence)
        except DELIVERY_ERRORS as exc:
            log.error("could not tell the user that answering %s failed: %s", self.digest, exc)

    async def discard(self) -> None:
        """Nothing to say after all: close a stream, remove a placeholder."""
        await self._pump.stop()
        self._set_deadline()
        with contextlib.suppress(*DELIVERY_ERRORS):
            if self._stream_ts is not None:
                await self._stop_stream("")
            elif self._ts is not None:
                ts = self._ts
                await self._urgent("chat.delete", lambda: self.client.chat_delete(channel=self.target.channel, ts=ts))

    async def close(self) -> None:
        """Always called last: stop the pump, clear the status."""
        await self._pump.stop()
        if self.status is not None:
            await self.status.clear()

    def _set_deadline(self) -> None:
        if self.delivery.deadline is None:
            self.delivery.deadline = time.monotonic() + self.calls.deliver_within

    # ---- what the pump sends (luxuries) --------------------------------------------------------
    async def _push(self) -> float | None:
        """Show what has streamed so far; a number: skipped, the pump tries again after that many seconds."""
        if self._unknown:
            return None  # a luxury whose outcome is unknown: no more of them, the final text settles it
        if self._tool != self._tool_shown and (later := await self._show_tool()) is not None:
            return later
        if self.mode == "stream":
            pending = self._text[self._streamed : self.limit]
            if not pending:
                return None
            try:
                if self._stream_ts is None:
                    started, later = await self._luxury_create("chat.startStream", pending, self._start(pending))
                    if started is None:
                        return later
                    self._stream_ts = str(started["ts"])
                else:
                    ts = self._stream_ts
                    chunks = self.tasks.text(pending)
                    appended, later = await self.calls.luxury(self.delivery, "chat.appendStream", lambda: (
                        self.client.chat_appendStream(channel=self.target.channel, ts=ts, **chunks)))
                    if appended is None:
                        return later
                    self.tasks.done()
                self._streamed += len(pending)
                return None
            except SlackApiError as exc:
                self._fall_back(exc)
        return await self._preview()

    async def _show_tool(self) -> float | None:
        """The tool line: as the AI-app status, or a ``task_update`` chunk (post mode: in :meth:`_preview`)."""
        status = self._tool_shown = self._tool
        if self._show_status and self.status is not None:
            if status:
                await self.status.show(status)
        elif self.mode == "stream" and status:
            chunks = self.tasks.begin(status)
            ts = self._stream_ts
            try:
                if ts is None:
                    started, later = await self._luxury_create("chat.startStream", status, lambda: (
                        self.client.chat_startStream(channel=self.target.channel, thread_ts=self.target.thread_ts or "",
                                                     chunks=chunks, recipient_team_id=self.target.team,
                                                     recipient_user_id=self.target.user)))
                    if started is not None:
                        self._stream_ts = str(started["ts"])
                    return None if started is not None else later
                shown, later = await self.calls.luxury(self.delivery, "chat.appendStream", lambda: (
                    self.client.chat_appendStream(channel=self.target.channel, ts=ts, chunks=chunks)))
                return None if shown is not None else later
            except SlackApiError as exc:
                error = str(exc.response.get("error", ""))
                if ts is None and "chunk" not in error:
                    self._fall_back(exc)  # no streaming here: the status goes in the post's preview
                    return await self._preview()
                log.debug("could not show tool progress in the stream: %s", error)  # a luxury: stream without it
                self.tasks.done()
        return None

    async def _preview(self) -> float | None:
        text = self._text + (f"\n\n*{self._tool}*" if self._tool and not self._show_status else "")
        preview = split_text(markdown_to_mrkdwn(text), self.limit)[0] if text.strip() else ""
        if not preview or preview == self._shown:
            return None
        if self._ts is None:
            posted, later = await self._luxury_create("chat.postMessage", preview, self._post_call(preview))
            if posted is None:
                return later
            self._ts = str(posted["ts"])
        else:
            ts = self._ts
            updated, later = await self.calls.luxury(self.delivery, "chat.update", lambda: (
                self.client.chat_update(channel=self.target.channel, ts=ts, text=preview)))
            if updated is None:
                return later
        self._shown = preview
        return None

    async def _luxury_create(self, method: str, text: str, call: Call) -> tuple[AsyncSlackResponse | None, float]:
        """The answer's first message (a stream's start, or the first post): it waits up to an interval for its
        turn, since nothing is shown yet and skipping it would show nothing for at least that long."""
        try:
            return await self.calls.luxury(self.delivery, method, call, channel=self.target.channel,
                                           wait=self._interval)
        except SEND_ERRORS as exc:
            if not isinstance(exc, SlackApiError) and outcome_unknown(exc):
                self._unknown.add(text)
            raise

    # ---- streaming -----------------------------------------------------------------------------
    def _start(self, text: str) -> Call:
        def call() -> Awaitable[AsyncSlackResponse]:
            return self.client.chat_startStream(
                channel=self.target.channel, thread_ts=self.target.thread_ts or "", markdown_text=text,
                recipient_team_id=self.target.team, recipient_user_id=self.target.user,
            )
        return call

    def _fall_back(self, exc: SlackApiError) -> None:
        """Streaming failed: continue with message edits, on the streamed message if there is one."""
        if self._stream_ts is None:
            self.streams.refused(self.target.team, str(exc.response.get("error", "")))
        else:
            log.warning("chat stream broke off (%s); finishing with message edits", exc.response.get("error"))
            self._ts = self._stream_ts
        self.mode = "post"
        self._stream_ts = None

    async def _stop_stream(self, rest: str, *, final: bool = False) -> bool:
        """Finish the stream with ``rest`` (starting it if need be); False (and post mode) if Slack refused."""
        try:
            if self._stream_ts is None:
                if not rest:
                    return False
                started = await self._create("chat.startStream", rest, self._start(rest))
                self._stream_ts = str(started["ts"])
                self._streamed += len(rest)
                rest = ""
            ts = self._stream_ts
            args = {**self.tasks.text(rest), **self._blocks(None, final)}
            await self._urgent("chat.stopStream", lambda: (
                self.client.chat_stopStream(channel=self.target.channel, ts=ts, **args)))
            self._ts = ts
            self._stream_ts = None
            return True
        except SlackApiError as exc:
            self._fall_back(exc)
            return False
        except Undelivered:
            raise
        except SEND_ERRORS as exc:
            log.warning("could not finish the chat stream: %s", exc)
            self._ts = self._stream_ts or self._ts
            self._stream_ts = None
            self.mode = "post"
            return False

    # ---- the final text (urgent) -----------------------------------------------------------------
    async def _final(self, text: str) -> None:
        if self.mode == "stream":
            # The stream can only append: it finishes the answer if what it showed is the start of it.
            if len(text) <= self.limit and text.startswith(self._text[: self._streamed]):
                if await self._stop_stream(text[self._streamed :], final=True):
                    return
            elif self._stream_ts is not None:
                await self._stop_stream("")
        await self._post_final(text)

    async def _post_final(self, text: str) -> None:
        chunks = split_text(markdown_to_mrkdwn(text), self.limit)
        if not chunks:
            return
        first, rest = chunks[0], chunks[1:]
        if self._ts is None or not await self._update(self._ts, first, last=not rest):
            await self._post(first, last=not rest)
        for n, chunk in enumerate(rest, 2):  # one after another: the parts arrive in order, or the rest is not sent
            await self._post(chunk, last=n == len(chunks))

    async def _update(self, ts: str, text: str, *, last: bool = False) -> bool:
        """Edit the answer's message into ``text``; False when Slack will not edit it (post anew then)."""
        def call() -> Awaitable[AsyncSlackResponse]:
            return self.client.chat_update(channel=self.target.channel, ts=ts, text=text, **self._blocks(text, last))

        try:
            try:
                await self._urgent("chat.update", call)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("finalising the answer message for %s failed (%s); once more (an edit is idempotent)",
                            self.digest, exc)
                await self._urgent("chat.update", call)
        except SlackApiError as exc:
            log.warning("could not finalise the answer message (%s); posting it anew", exc.response.get("error"))
            return False
        self._shown = text
        return True

    async def _post(self, text: str, *, last: bool = False) -> str | None:
        response = await self._create("chat.postMessage", text, self._post_call(text, **self._blocks(text, last)))
        ts = response.get("ts")
        return str(ts) if ts else None

    def _post_call(self, text: str, **blocks: Any) -> Call:
        def call() -> Awaitable[AsyncSlackResponse]:
            return self.client.chat_postMessage(channel=self.target.channel, thread_ts=self.target.thread_ts, text=text,
                                                **blocks)
        return call

    def _blocks(self, text: str | None, last: bool) -> dict[str, Any]:
        return {"blocks": self.final_blocks(text)} if last and self.final_blocks is not None else {}

    async def _urgent(self, method: str, call: Call) -> AsyncSlackResponse:
        return await self.calls.urgent(self.delivery, method, call, channel=self.target.channel)

    async def _create(self, method: str, text: str, call: Call) -> AsyncSlackResponse:
        """An urgent call that creates something: never repeated once its outcome is unknown."""
        if text in self._unknown:
            raise Undelivered(f"{method}: an earlier call with this text may have arrived; not sending it again")
        try:
            return await self._urgent(method, call)
        except SEND_ERRORS as exc:
            if not isinstance(exc, SlackApiError) and outcome_unknown(exc):
                self._unknown.add(text)
                raise Undelivered(f"{method}: outcome unknown ({exc}); not sending it again") from exc
            raise
