"""Rendering one answer into Discord messages: typing, throttled streaming edits, safe splitting.

Discord rate-limits edits (about 5 per 5 s per channel), so the streamed text is flushed by a
:class:`~adapters.kit.reply.Pump` at most once per ``interval``: the first message goes out at the first
delta, later deltas are folded into one edit a second, and the final text is rendered once more at the
end. Text over the 2,000-character limit is split with :func:`adapters.kit.text.split_text` (line
boundaries, fences closed and reopened) into several messages, edited in place as the stream grows.
Every send and edit carries ``allowed_mentions`` that cannot ping anyone the model names: no
@everyone/@here, no roles, no users (only, optionally, the asker we reply to).

The channel's edit budget is shared by every answer in it (:mod:`adapters.discord.limits`): a streamed
edit is skipped when the channel's lane is busy, a final edit takes the next turn and always goes (one
at a time per channel, paced by discord.py from Discord's headers, not by the lane), and a
final edit or send that discord.py gives up on after repeated 429s is tried again until the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

import discord

from adapters.discord.limits import ChannelEdits
from adapters.kit.reply import Pump, PumpedText
from adapters.kit.text import split_text

log = logging.getLogger("threadkeeper.discord")

DISCORD_TEXT_LIMIT: int = 2000
"""Discord's limit for one message's content."""

NO_MENTIONS = discord.AllowedMentions.none()
"""For everything the model wrote: no @everyone/@here, roles or users are ever pinged."""
REPLY_MENTIONS = discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=True)
"""The first message of a reply notifies the asker (the author of the replied-to message) and no one else."""

TYPING_REFRESH = 8.0
"""Discord shows "typing" for 10 s per call: refresh a little before it lapses."""

Destination = Callable[[], Awaitable[discord.abc.Messageable]]
T = TypeVar("T")


class DiscordReply(PumpedText):
    """One answer's messages in one channel: a :class:`~adapters.kit.reply.Reply`.

    ``channel`` gets the typing indicator; ``destination`` is awaited once, at the first send, for the
    channel that receives the answer (lets the adapter open a Discord thread only when there is something
    to say); ``reference`` is the user's message the first chunk replies to (``None``: no reply).
    """

    def __init__(
        self,
        channel: discord.abc.Messageable,
        *,
        destination: Destination | None = None,
        reference: discord.Message | None = None,
        interval: float = 1.0,
        limit: int = DISCORD_TEXT_LIMIT,
        edits: ChannelEdits | None = None,
        digest: str = "-",
        final_view: Callable[[], discord.ui.View] | None = None,
    ) -> None:
        self._channel = channel
        self._final_view = final_view
        """Components the answer's last message ends with (the feedback buttons), in the final render."""
        self._destination = destination
        self._target: discord.abc.Messageable | None = None
        self._target_lock = asyncio.Lock()
        """One resolution at a time: the status line and an approval prompt may ask together (one thread)."""
        self._reference = reference
        self._limit = limit
        self._edits = edits or ChannelEdits()
        self.delivery = self._edits.delivery(digest)
        self._text = ""
        self._tool = ""
        """Tool progress ("searching the web…"), shown in italics under the text until the answer says more."""
        self.sent: list[discord.Message] = []
        self._shown: list[str] = []
        self._pump = Pump(self._flush, interval=interval, errors=(discord.HTTPException,), log=log,
                          name="discord-stream")
        self._typing: asyncio.Task[None] | None = None
        self._typed = asyncio.Event()
        self._render_lock = asyncio.Lock()

    # -- the Reply protocol --------------------------------------------------------------------
    async def begin(self) -> None:
        """Show "typing" until the first message goes out."""
        if self._typing is None:
            self._typing = asyncio.create_task(self._keep_typing(), name="discord-typing")

    async def finish(self, text: str) -> None:
        """Render the final text (the core's ``answer.text``, which wins over the streamed deltas)."""
        await self._pump.stop()
        self._text = text
        self._edits.start_deadline(self.delivery)
        with self._edits.answering(self.delivery):
            await self._render(text, final=True, view=self._final_view() if self._final_view else None)
        self._edits.late(self.delivery)

    async def fail(self, sentence: str) -> None:
        """Show an error sentence: as the reply if nothing was sent yet, else as one more message."""
        await self._pump.stop()
        self._edits.start_deadline(self.delivery)
        with self._edits.answering(self.delivery):
            if not self.sent:
                await self._render(sentence, final=True)
                return
            target = await self.target()
            self.sent.append(await self._retried(lambda: target.send(sentence, allowed_mentions=NO_MENTIONS)))
            self._shown.append(sentence)

    async def discard(self) -> None:
        """Nothing to say after all: stop streaming; whatever was already sent stays."""
        await self._pump.stop()

    async def close(self) -> None:
        """Stop the pump and the typing indicator."""
        await self._pump.stop()
        await self._stop_typing()

    # -- internals -------------------------------------------------------------------------------
    async def _keep_typing(self) -> None:
        try:
            while True:
                try:
                    await self._channel.typing()
                except discord.HTTPException as exc:
                    log.debug("typing indicator failed: %s", exc)
                    return
                finally:
                    self._typed.set()
                await asyncio.sleep(TYPING_REFRESH)
        finally:
            self._typed.set()

    async def _stop_typing(self) -> None:
        if self._typing is not None:
            self._typing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._typing
            self._typing = None

    async def _flush(self) -> float | None:
        with self._edits.answering(self.delivery):
            return await self._render(self._text + (f"\n\n*{self._tool}*" if self._tool else ""), final=False)

    async def target(self) -> discord.abc.Messageable:
        """Where the answer goes (an approval prompt too): the destination, resolved at the first call."""
        async with self._target_lock:
            if self._target is None:
                self._target = await self._destination() if self._destination else self._channel
            return self._target

    async def _render(self, text: str, *, final: bool, view: discord.ui.View | None = None) -> float | None:
        """Show ``text`` (``view`` under its last message); a number: a streamed edit was skipped, try again
        after that many seconds."""
        async with self._render_lock:
            chunks = [c for c in split_text(text, self._limit) if c.strip()] if text.strip() else []
            for index, chunk in enumerate(chunks):
                last_view = view if index == len(chunks) - 1 else None
                if index < len(self.sent):
                    if self._shown[index] != chunk or last_view is not None:
                        message = self.sent[index]
                        if not final and (later := self._edits.luxury(message.channel.id)):
                            return later
                        edit = partial(message.edit, content=chunk, allowed_mentions=NO_MENTIONS)
                        if last_view is not None:
                            edit = partial(edit, view=last_view)
                        if final:
                            async with self._edits.urgent(message.channel.id, self.delivery):
                                await self._retried(edit)
                        else:
                            await self._retried(edit, final=False)
                        self._shown[index] = chunk
                    continue
                self.sent.append(await self._retried(partial(self._send, chunk, first=index == 0, view=last_view),
                                                     final=final))
                self._shown.append(chunk)
            while len(self.sent) > len(chunks):
                extra = self.sent.pop()
                self._shown.pop()
                with contextlib.suppress(discord.HTTPException):
                    await extra.delete()
        return None

    async def _retried(self, call: Callable[[], Awaitable[T]], *, final: bool = True) -> T:
        """A final call again while discord.py gives up on 429s (it already waited each one out)."""
        while True:
            try:
                return await call()
            except discord.HTTPException as exc:
                if not final or exc.status != 429 or self.delivery.past_deadline():
                    raise
                log.info("Discord still refuses the answer for %s after discord.py's retries; once more",
                         self.delivery.digest)

    async def _send(self, chunk: str, *, first: bool, view: discord.ui.View | None = None) -> discord.Message:
        if first:
            # The typing indicator goes out before the answer, then stops (a message clears it anyway).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._typed.wait(), 2.0)
            await self._stop_typing()
        target = await self.target()
        if first and self._reference is not None and target is self._channel:
            reference = self._reference.to_reference(fail_if_not_exists=False)
            if view is not None:
                return await target.send(chunk, reference=reference, allowed_mentions=REPLY_MENTIONS, view=view)
            return await target.send(chunk, reference=reference, allowed_mentions=REPLY_MENTIONS)
        if view is not None:
            return await target.send(chunk, allowed_mentions=NO_MENTIONS, view=view)
        return await target.send(chunk, allowed_mentions=NO_MENTIONS)
