"""Rendering one answer into Slack while it streams in.

Two ways, chosen per message:

* **stream**: Slack's chat streaming API (``chat.startStream`` / ``appendStream`` / ``stopStream``
  through ``AsyncWebClient.chat_stream``). Slack renders the model's Markdown itself. Streams are
  replies, so this needs a thread to answer in; a workspace that refuses the API (``not_allowed``,
  ``unknown_method``, ...) is remembered in :class:`StreamSupport` and not asked again.
* **post**: a message posted at the first delta and edited with ``chat.update`` at most once per
  ``interval`` (Slack rate-limits edits), then the final text rendered with ``markdown_to_mrkdwn``
  and split with ``split_text`` into as many messages as it needs.

Answers longer than :data:`~adapters.slack.mrkdwn.SLACK_TEXT_LIMIT` end in the post form even when streaming:
the stream shows the beginning while the model writes, then becomes the first of the split messages.

Deltas never wait for Slack: :meth:`SlackReply.on_delta` only appends to a buffer and wakes the
reply's :class:`~adapters.kit.reply.Pump`, which sends what has accumulated at most once per ``interval``.
"""

from __future__ import annotations

import contextlib
import logging

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from adapters.kit.reply import Pump
from adapters.kit.text import split_text
from adapters.slack.mrkdwn import SLACK_TEXT_LIMIT, markdown_to_mrkdwn
from adapters.slack.parse import Target

log = logging.getLogger("threadkeeper.slack")

SEND_ERRORS: tuple[type[BaseException], ...] = (SlackClientError, aiohttp.ClientError, TimeoutError)
"""What a Slack call may raise that must not lose the rest of the reply."""

TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                              "request_timeout"})
"""Stream errors that say nothing about whether the workspace supports streaming."""

THINKING = "thinking…"


class StreamSupport:
    """Teams whose workspace refused the chat streaming API (in memory: a restart asks again)."""

    def __init__(self) -> None:
        self._off: set[str] = set()

    def enabled(self, team: str) -> bool:
        return team not in self._off

    def refused(self, team: str, exc: SlackApiError) -> None:
        error = str(exc.response.get("error", ""))
        if error in TRANSIENT_ERRORS:
            log.info("chat streaming failed transiently (%s); using message edits for this answer", error)
            return
        if team not in self._off:
            log.info("chat streaming is unavailable in team %s (%s); using message edits", team, error)
        self._off.add(team)


class SlackReply:
    """One answer on its way into one Slack channel or thread (a :class:`~adapters.kit.reply.Reply`)."""

    def __init__(
        self,
        client: AsyncWebClient,
        target: Target,
        *,
        streams: StreamSupport,
        interval: float = 1.0,
        show_status: bool = False,
        limit: int = SLACK_TEXT_LIMIT,
    ) -> None:
        self.client = client
        self.target = target
        self.streams = streams
        self.limit = limit
        self._show_status = show_status and target.thread_ts is not None
        self._status_set = False
        self.mode = "stream" if target.thread_ts and streams.enabled(target.team) else "post"
        self._text = ""
        self._stream: AsyncChatStream | None = None
        self._streamed = 0
        self._ts: str | None = None
        self._shown = ""
        self._pump = Pump(self._push, interval=interval, errors=SEND_ERRORS, log=log, name="slack-reply")

    # ---- lifecycle ---------------------------------------------------------------------------
    async def begin(self) -> None:
        """Show "thinking…" in the AI-app pane while the assistant works."""
        if self._show_status and self.target.thread_ts:
            try:
                await self.client.assistant_threads_setStatus(
                    channel_id=self.target.channel, thread_ts=self.target.thread_ts, status=THINKING
                )
                self._status_set = True
            except SEND_ERRORS as exc:
                log.debug("could not set the assistant status: %s", exc)

    async def on_delta(self, delta: str) -> None:
        self._text += delta
        self._pump.wake()

    async def finish(self, text: str) -> None:
        """The final answer: complete, rendered, split; replaces whatever the stream showed."""
        await self._pump.stop()
        if not text.strip():
            await self.discard()
            return
        if self.mode == "stream":
            # The stream can only append: it finishes the answer if what it showed is the start of it.
            if len(text) <= self.limit and text.startswith(self._text[: self._streamed]):
                if await self._stop_stream(text[self._streamed :]):
                    return
            else:
                await self._stop_stream("")
        await self._post_final(text)

    async def fail(self, sentence: str) -> None:
        """One short sentence in the thread; whatever already streamed stays as it is."""
        await self._pump.stop()
        if self._stream is not None and self._stream.ts:
            await self._stop_stream("")
        await self._post(sentence)

    async def discard(self) -> None:
        """Nothing to say after all: close a stream, remove a placeholder."""
        await self._pump.stop()
        if self._stream is not None and self._stream.ts:
            await self._stop_stream("")
        elif self._ts is not None:
            with contextlib.suppress(*SEND_ERRORS):
                await self.client.chat_delete(channel=self.target.channel, ts=self._ts)

    async def close(self) -> None:
        """Always called last: stop the pump, clear the status."""
        await self._pump.stop()
        if self._status_set and self.target.thread_ts:
            self._status_set = False
            try:
                await self.client.assistant_threads_setStatus(
                    channel_id=self.target.channel, thread_ts=self.target.thread_ts, status=""
                )
            except SEND_ERRORS as exc:
                log.debug("could not clear the assistant status: %s", exc)

    # ---- what the pump sends ------------------------------------------------------------------
    async def _push(self) -> None:
        if self.mode == "stream":
            pending = self._text[self._streamed : self.limit]
            if not pending:
                return
            try:
                stream = await self._open_stream()
                await stream.append(markdown_text=pending)
                self._streamed += len(pending)
                return
            except SlackApiError as exc:
                self._fall_back(exc)
        await self._preview()

    async def _preview(self) -> None:
        preview = split_text(markdown_to_mrkdwn(self._text), self.limit)[0] if self._text.strip() else ""
        if not preview or preview == self._shown:
            return
        if self._ts is None:
            self._ts = await self._post(preview)
        else:
            await self.client.chat_update(channel=self.target.channel, ts=self._ts, text=preview)
        self._shown = preview

    # ---- streaming -----------------------------------------------------------------------------
    async def _open_stream(self) -> AsyncChatStream:
        if self._stream is None:
            self._stream = await self.client.chat_stream(
                channel=self.target.channel,
                thread_ts=self.target.thread_ts or "",
                recipient_team_id=self.target.team,
                recipient_user_id=self.target.user,
                buffer_size=1,
            )
        return self._stream

    def _fall_back(self, exc: SlackApiError) -> None:
        """Streaming failed: continue with message edits, on the streamed message if there is one."""
        if self._stream is None or not self._stream.ts:
            self.streams.refused(self.target.team, exc)
        else:
            log.warning("chat stream broke off (%s); finishing with message edits", exc.response.get("error"))
            self._ts = self._stream.ts
        self.mode = "post"
        self._stream = None

    async def _stop_stream(self, rest: str) -> bool:
        """Finish the stream with ``rest``; False (and post mode) if Slack refused."""
        try:
            stream = await self._open_stream() if rest else self._stream
            if stream is None:
                return False
            await stream.stop(markdown_text=rest or None)
            if stream.ts:
                self._ts = stream.ts
            return True
        except SlackApiError as exc:
            self._fall_back(exc)
            return False
        except SEND_ERRORS as exc:
            log.warning("could not finish the chat stream: %s", exc)
            self.mode = "post"
            return False

    # ---- posting -----------------------------------------------------------------------------
    async def _post_final(self, text: str) -> None:
        chunks = split_text(markdown_to_mrkdwn(text), self.limit)
        if not chunks:
            return
        first, rest = chunks[0], chunks[1:]
        if self._ts is not None:
            try:
                await self.client.chat_update(channel=self.target.channel, ts=self._ts, text=first)
            except SEND_ERRORS as exc:
                log.warning("could not finalise the answer message (%s); posting it anew", exc)
                await self._post(first)
        else:
            await self._post(first)
        for chunk in rest:
            await self._post(chunk)

    async def _post(self, text: str) -> str | None:
        try:
            response = await self.client.chat_postMessage(
                channel=self.target.channel, thread_ts=self.target.thread_ts, text=text
            )
        except SEND_ERRORS as exc:
            log.error("could not post to Slack channel %s: %s", self.target.channel, exc)
            return None
        ts = response.get("ts")
        return str(ts) if ts else None
