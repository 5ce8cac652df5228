"""Discord messages and interactions -> :class:`~bot.domain.Incoming` and where the answer goes.

Pure functions over discord.py objects, so the rules are easy to read in one place:

* answered: DMs; in servers, messages that mention the bot (or its managed role), replies to the bot's
  messages, every message in a channel listed in ``DISCORD_CHANNELS`` (and its threads), and messages in
  threads the bot opened;
* follow-ups: in another Discord thread, a message without a mention is answered only where the bot was called
  into that thread before (the adapter asks the core, :attr:`Parsed.follow_up`); one that mentions someone else
  is left alone;
* ignored: bots (the bot itself included), system messages (joins, pins, ...), and messages with
  nothing left once the bot's mention is removed (a bare mention, or content Discord withheld
  without the message-content intent); a message with files, or forwarding a message, but no text of its own
  is answered (the forwarded text goes along as quoted material, :mod:`adapters.discord.context`).

The thread key is guild + channel + user; DMs use the workspace ``dm`` (and are
:attr:`Incoming.is_dm <bot.domain.Incoming.is_dm>`); a Discord thread is ``parent/thread``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import discord

from adapters.discord.context import forwarded, replied_to
from adapters.discord.files import attachments_of
from adapters.kit.text import strip_mentions
from bot.domain import Incoming, ThreadKey

PLATFORM = "discord"
THREAD_NAME_LIMIT = 90

ANSWERED_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})
"""Message types a person writes; every other type (joins, pins, ...) is ignored."""


@dataclass(frozen=True, slots=True)
class Parsed:
    incoming: Incoming
    open_thread: bool
    """Answer in a new Discord thread started from the message (``DISCORD_OPEN_THREADS``)."""
    reply: bool
    """The answer's first message replies to the user's (in servers, unless it opens a thread)."""
    follow_up: bool = False
    """No mention in a Discord thread: answer only if the bot was called into it (``Incoming.place``)."""
    channel_talk: bool = False
    """A mention in a server: the recent channel messages go along (``DISCORD_CHANNEL_CONTEXT``)."""


def thread_key(channel: discord.abc.Messageable | discord.interactions.InteractionChannel | None,
               channel_id: int, guild_id: int | None, user_id: int) -> ThreadKey:
    """guild + channel + user; DMs: ``dm`` + channel + user; a Discord thread: ``parent/thread``."""
    if guild_id is None:
        return ThreadKey(PLATFORM, "dm", str(channel_id), str(user_id))
    where = str(channel_id)
    if isinstance(channel, discord.Thread) and channel.parent_id:
        where = f"{channel.parent_id}/{channel_id}"
    return ThreadKey(PLATFORM, str(guild_id), where, str(user_id))


def forget_key(interaction: discord.Interaction) -> ThreadKey:
    """The conversation ``/forget`` was used in (its workspace and user also scope ``/forget all``)."""
    return thread_key(interaction.channel, interaction.channel_id or 0, interaction.guild_id, interaction.user.id)


def button_click(interaction: discord.Interaction, prefix: str) -> tuple[str, str] | None:
    """``(value, rest)`` of a click on our button whose ``custom_id`` is ``<prefix><value>:<rest>``, else None."""
    if interaction.type is not discord.InteractionType.component or not isinstance(interaction.data, dict):
        return None
    custom_id = str(interaction.data.get("custom_id") or "")
    if not custom_id.startswith(prefix):
        return None
    value, _, rest = custom_id.removeprefix(prefix).partition(":")
    return value, rest


def guild_id(message: discord.Message) -> int | None:
    if message.guild is not None:
        return message.guild.id
    return getattr(message.channel, "guild_id", None)


def mentions_me(message: discord.Message, me: discord.ClientUser) -> tuple[bool, list[str]]:
    """Whether the bot (or its managed role) is mentioned, and the mention tokens to strip."""
    tokens = [f"<@{me.id}>", f"<@!{me.id}>"]
    mentioned = any(u.id == me.id for u in message.mentions)
    role = message.guild.self_role if message.guild is not None else None
    if role is not None:
        tokens.append(f"<@&{role.id}>")
        mentioned = mentioned or role.id in message.raw_role_mentions
    return mentioned, tokens


def readable(text: str, message: discord.Message, me: discord.ClientUser) -> str:
    """Other users' and roles' mention tokens become ``@name``: the model reads names, not ids."""
    for user in message.mentions:
        if user.id != me.id:
            name = f"@{user.display_name}"
            text = text.replace(f"<@{user.id}>", name).replace(f"<@!{user.id}>", name)
    for role in message.role_mentions:
        text = text.replace(f"<@&{role.id}>", f"@{role.name}")
    return text


def thread_name(text: str, author: str) -> str:
    """A name for the Discord thread an answer opens: the question, on one line, cut short."""
    return " ".join(text.split())[:THREAD_NAME_LIMIT] or f"Chat with {author}"


def parse_message(
    message: discord.Message, me: discord.ClientUser, *, channels: Collection[str], open_threads: bool
) -> Parsed | None:
    """A message -> what to answer and how, or ``None`` to ignore it.

    ``channels`` are the ids answered without a mention (``DISCORD_CHANNELS``); ``open_threads``
    answers server channel messages in a new thread (``DISCORD_OPEN_THREADS``).
    """
    if message.author.bot or message.author.id == me.id or message.type not in ANSWERED_TYPES:
        return None
    guild = guild_id(message)
    mentioned, tokens = mentions_me(message, me)
    channel = message.channel
    in_thread = isinstance(channel, discord.Thread)
    parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
    listed = str(parent_id or channel.id) in channels
    # Threads the bot opened, and replies to its messages, continue without a mention (without a reply ping,
    # their content needs the content intent).
    own_thread = isinstance(channel, discord.Thread) and channel.owner_id == me.id
    answered = replied_to(message)
    to_me = answered is not None and answered.author.id == me.id
    follow_up = False
    if guild is not None and not (mentioned or listed or own_thread or to_me):
        if not in_thread or message.raw_mentions or message.raw_role_mentions or message.mention_everyone:
            return None
        follow_up = True  # the adapter answers it only where the bot was called into this thread
    open_thread = guild is not None and open_threads and isinstance(channel, discord.TextChannel)
    if open_thread:
        # A thread started from a message takes the message's id: the key is known before it exists.
        key = ThreadKey(PLATFORM, str(guild), f"{channel.id}/{message.id}", str(message.author.id))
    else:
        key = thread_key(channel, channel.id, guild, message.author.id)
    text = readable(strip_mentions(message.content, tokens), message, me)
    shared = forwarded(message)
    if not text.strip() and not attachments_of(message) and not shared:
        return None
    place = ""
    if guild is not None and (in_thread or open_thread):
        place = f"{PLATFORM}:{guild}:{channel.id if in_thread else message.id}"
    incoming = Incoming(key, text, str(message.id), direct=guild is None or mentioned, is_dm=guild is None,
                        context=shared, place=place)
    return Parsed(incoming, open_thread=open_thread, reply=guild is not None and not open_thread,
                  follow_up=follow_up, channel_talk=guild is not None and mentioned)
