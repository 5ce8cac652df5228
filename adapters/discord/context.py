"""What a Discord message brings along: the messages it replies to, the ones it forwards, recent channel talk.

* **Forwards** (``message_snapshots``) are what the user shares: their text goes along as quoted material
  (:func:`forwarded`), read at parse time, no call.
* **Reply chains**: a reply brings the message it answers (Discord sends it with the event), and that
  message's own chain up to :data:`CHAIN_LIMIT` messages (one REST call each), each attributed to its author.
  The walk stops at an answer of the bot to the same person: from there on the chain is in the conversation
  already. Other bots' messages are labelled as bots'.
* **Channel context** (``DISCORD_CHANNEL_CONTEXT=N``): a mention in a server channel brings the last ``N``
  messages before it that the conversation has not seen yet (one call). Reading others' messages needs the
  message-content intent (``doctor`` checks it).

The reads happen when the core answers the message (:class:`~bot.domain.Gathered`), under the conversation's
lock, so a redelivery reads nothing and the same channel lines are not brought twice (the mark is the newest
message id covered).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import discord

from bot.domain import Gather, Gathered, Quoted

log = logging.getLogger("threadkeeper.discord")

CHAIN_LIMIT = 5
"""Messages of a reply chain brought along at most."""


def quoted(message: discord.Message, me: discord.abc.User) -> Quoted | None:
    """A message as context: its author's display name and its text (None when there is nothing to read)."""
    text = message.content.strip()
    names = [a.filename for a in message.attachments]
    if names:
        text = " ".join(p for p in (text, *(f"[file: {n}]" for n in names)) if p)
    if not text:
        return None
    author = message.author
    user = "" if author.bot else str(author.id)
    return Quoted(author.display_name, text, is_bot=author.bot or author.id == me.id, user=user)


def forwarded(message: discord.Message) -> tuple[Quoted, ...]:
    """The text of the messages a message forwards (Discord does not say who wrote them)."""
    out = []
    for snapshot in getattr(message, "message_snapshots", None) or ():
        text = (getattr(snapshot, "content", "") or "").strip()
        if text:
            out.append(Quoted(f"someone (forwarded by {message.author.display_name})", text))
    return tuple(out)


def is_reply(message: discord.Message) -> bool:
    ref = message.reference
    return ref is not None and ref.message_id is not None and ref.type == discord.MessageReferenceType.reply


def replied_to(message: discord.Message) -> discord.Message | None:
    """The message this one replies to, when Discord sent it along (it does on the gateway)."""
    if not is_reply(message):
        return None
    resolved = message.reference.resolved if message.reference is not None else None
    return resolved if isinstance(resolved, discord.Message) else None


class DiscordContext:
    def __init__(self, me: discord.ClientUser, *, channel_limit: int = 0, chain_limit: int = CHAIN_LIMIT) -> None:
        self.me = me
        self.channel_limit = channel_limit
        self.chain_limit = chain_limit

    def gather_for(self, message: discord.Message, *, channel_talk: bool) -> Gather:
        """The core's gather function: the reply chain, and with ``channel_talk`` the recent channel messages."""

        async def gather(mark: str) -> Gathered:
            chain = await self._chain(message)
            seen = {m.id for m in chain}
            recent: list[discord.Message] = []
            if channel_talk and self.channel_limit:
                recent = [m for m in await self._recent(message, mark) if m.id not in seen]
            ordered = sorted([*recent, *chain], key=lambda m: m.id)
            context = tuple(q for q in (quoted(m, self.me) for m in ordered) if q is not None)
            return Gathered(context, str(max(int(mark) if mark.isdigit() else 0, message.id)))

        return gather

    async def _chain(self, message: discord.Message) -> list[discord.Message]:
        """The messages this one replies to, newest first as walked, up to the limit."""
        out: list[discord.Message] = []
        current = replied_to(message)
        if current is None and is_reply(message):
            current = await self._fetch(message.channel, message.reference)
        while current is not None and len(out) < self.chain_limit:
            mine = current.author.id == self.me.id
            # the next link is read only when it is needed: to go on, or to tell whom the bot's message answered
            wanted = mine or len(out) + 1 < self.chain_limit
            earlier = await self._fetch(message.channel, current.reference) if wanted and is_reply(current) else None
            if mine and (earlier is None or earlier.author.id == message.author.id):
                break  # the bot's answer to this person: the rest is in their conversation already
            out.append(current)
            current = earlier
        return out

    async def _fetch(self, channel: discord.abc.Messageable,
                     reference: discord.MessageReference | None) -> discord.Message | None:
        if reference is None or reference.message_id is None:
            return None
        if isinstance(reference.resolved, discord.Message):
            return reference.resolved
        try:
            return await channel.fetch_message(reference.message_id)
        except discord.HTTPException as exc:
            log.info("could not read a replied-to message (%s); the chain stops there", exc.status)
            return None

    async def _recent(self, message: discord.Message, mark: str) -> Sequence[discord.Message]:
        """The last messages before this one, minus those up to ``mark`` (already brought) and the bot's own."""
        seen = int(mark) if mark.isdigit() else 0
        try:
            found = [m async for m in message.channel.history(limit=self.channel_limit, before=message)]
        except discord.HTTPException as exc:
            log.warning("could not read the channel's recent messages (%s); answering without them", exc.status)
            return []
        return [m for m in found if m.id > seen and m.author.id != self.me.id
                and m.type in (discord.MessageType.default, discord.MessageType.reply)]
