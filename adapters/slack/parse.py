"""Slack payloads -> :class:`~bot.domain.Incoming`: which events deserve an answer, and where it goes.

Pure functions over the JSON Slack sends, so the rules are easy to read in one place:

* answered: ``message`` events in a DM (``channel_type == "im"``) and ``app_mention`` events;
* follow-ups (``message.channels``, ``message.groups``, ``message.mpim``): a message inside a Slack thread,
  answered without a mention only where the bot already answered (the adapter asks the core,
  :attr:`Parsed.follow_up`) and while ``SLACK_FOLLOW_UPS`` is on. A top-level message without a mention is
  never answered; one that mentions another person, a user group or another bot and not ours is left alone;
  one that mentions ours is left to its ``app_mention`` event;
* ignored: anything from a bot (``bot_id``/``bot_profile``), the bot's own user, events without a
  user, and message subtypes (edits, deletions, joins, ...) except the few that are still a person
  writing (:data:`ANSWERED_SUBTYPES`).

A message in a channel arrives twice when it mentions the bot (``app_mention`` and ``message.channels``): both
map to the message id ``<channel>:<ts>``, so the core answers it once whichever comes first. DMs keep the
``event_id``.

The thread key follows ``THREAD_SCOPE``: ``shared`` (default) makes a Slack thread in a channel one
conversation for everyone in it (user ``*``, each turn attributed to its speaker; the writer's id goes in
:attr:`Incoming.author <bot.domain.Incoming.author>`), while a DM is one conversation per person; ``user`` is
team + channel + user; ``thread`` puts the Slack thread into the channel part (``C1/1700000000.000100``), per
person; ``channel`` shares one conversation per channel (user ``*``). A top-level DM is its own thread, so under
``thread`` scope top-level DMs share the DM channel's key instead of starting a conversation per message.

Under Slack's agent messaging experience (``SLACK_AGENT_VIEW``: the manifest's ``agent_view``) each top-level DM
message opens a thread of its own: it is answered in that thread (:attr:`Parsed.opens_thread`), so under
``thread`` scope it starts a conversation of its own, while the default scopes keep one conversation per person.

:attr:`Incoming.is_dm <bot.domain.Incoming.is_dm>` is set for DM channels (their ids start with ``D``),
which pass the core's channel allowlists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from adapters.kit.text import strip_mentions
from bot.domain import SHARED, Incoming, ThreadKey

PLATFORM = "slack"

ANSWERED_SUBTYPES = frozenset({"file_share", "thread_broadcast"})
"""Message subtypes that are still a person writing to the bot; every other subtype is ignored."""

FOLLOWED = frozenset({"channel", "group", "mpim"})
"""``channel_type`` of the ``message.channels``, ``message.groups`` and ``message.mpim`` events (follow-ups)."""

_OTHERS = re.compile(r"<@([UWB][A-Z0-9]+)(?:\|[^>]*)?>|<!subteam\^")
"""Mentions of a person, a bot or a user group."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a reply goes, and whom it is for (streaming needs the recipient)."""

    channel: str
    thread_ts: str | None
    """The Slack thread to answer in; ``None`` answers at the top level (plain DMs)."""
    team: str
    user: str
    is_dm: bool


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message was written, for reading its thread (:mod:`adapters.slack.context`)."""

    team: str
    channel: str
    root: str | None
    """The Slack thread's root ``ts``; ``None`` for a top-level message (no thread to read yet)."""
    ts: str
    user: str


@dataclass(frozen=True, slots=True)
class Parsed:
    incoming: Incoming
    target: Target
    source: Source | None = None
    """Set for messages in channels: their thread is read when they are answered."""
    follow_up: bool = False
    """No mention: answer only if the bot already answered in this thread (``Incoming.place``)."""
    opens_thread: bool = False
    """A top-level DM under ``agent_view``: the first message of the thread its answer opens (it names it)."""


def thread_key(scope: str, team: str, channel: str, user: str, thread_root: str | None, *,
               dm: bool = False) -> ThreadKey:
    """The conversation a message belongs to under ``THREAD_SCOPE``.

    ``thread_root`` is the Slack thread's root ``ts``, or ``None`` for a message that is not part of
    a Slack thread (a top-level DM, or ``/forget``, which Slack never sends from a thread).
    """
    if scope == "shared":
        if thread_root and not dm and not channel.startswith("D"):
            return ThreadKey(PLATFORM, team, f"{channel}/{thread_root}", SHARED)
        return ThreadKey(PLATFORM, team, channel, user)
    if scope == "thread" and thread_root:
        return ThreadKey(PLATFORM, team, f"{channel}/{thread_root}", user)
    if scope == "channel":
        return ThreadKey(PLATFORM, team, channel, SHARED)
    return ThreadKey(PLATFORM, team, channel, user)


def strip_bot_mention(text: str, bot_user_id: str | None) -> str:
    """Remove ``<@BOT>`` / ``<@BOT|name>`` so the model sees only what the user asked."""
    if not bot_user_id:
        return text.strip()
    tokens = re.findall(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", text)
    return strip_mentions(text, tokens)


def team_of(body: dict[str, Any]) -> str:
    event = body.get("event") or {}
    team = body.get("team_id") or body.get("enterprise_id") or event.get("team") or "unknown"
    return str(team)


def is_from_bot(event: dict[str, Any], bot_user_id: str | None) -> bool:
    if event.get("bot_id") or event.get("bot_profile") or event.get("subtype") == "bot_message":
        return True
    user = event.get("user")
    return not user or (bot_user_id is not None and user == bot_user_id)


def mentions_bot(text: str, bot_user_id: str | None) -> bool:
    return bool(bot_user_id) and re.search(rf"<@{re.escape(str(bot_user_id))}(?:\|[^>]*)?>", text) is not None


def addressed_elsewhere(text: str, bot_user_id: str | None) -> bool:
    """Whether the text mentions a person, a bot or a user group other than the bot itself."""
    return any(m.group(1) != bot_user_id for m in _OTHERS.finditer(text))


def parse_event(body: dict[str, Any], bot_user_id: str | None, scope: str, *,
                follow_ups: bool = True, agent_view: bool = False) -> Parsed | None:
    """An Events API envelope -> what to answer and where, or ``None`` to ignore it."""
    event = body.get("event")
    if not isinstance(event, dict):
        return None
    kind = event.get("type")
    subtype = event.get("subtype")
    if subtype and subtype not in ANSWERED_SUBTYPES:
        return None
    if is_from_bot(event, bot_user_id):
        return None
    channel, ts = event.get("channel"), event.get("ts")
    if not channel or not ts:
        return None
    thread_ts: str | None = event.get("thread_ts") or None
    raw = str(event.get("text") or "")
    follow_up = False
    if kind == "message" and event.get("channel_type") == "im":
        is_dm, reply_in = True, thread_ts or (str(ts) if agent_view else None)
    elif kind == "message" and event.get("channel_type") in FOLLOWED:
        # A follow-up candidate: inside a thread, not for someone else, not a mention (its app_mention answers).
        if not follow_ups or not thread_ts or thread_ts == ts:
            return None
        if mentions_bot(raw, bot_user_id) or addressed_elsewhere(raw, bot_user_id):
            return None
        is_dm, reply_in, follow_up = False, thread_ts, True
    elif kind == "app_mention":
        is_dm, reply_in = False, thread_ts or ts
    else:
        return None
    team, user, channel = team_of(body), str(event["user"]), str(channel)
    # A DM passes channel allowlists; Slack DM channel ids start with "D" (an app_mention may come from one).
    private = is_dm or channel.startswith("D")
    key = thread_key(scope, team, channel, user, reply_in, dm=private)
    text = strip_bot_mention(raw, bot_user_id)
    message_id = str(body.get("event_id") or f"{channel}:{ts}") if private else f"{channel}:{ts}"
    place = "" if private else f"{PLATFORM}:{team}:{channel}/{reply_in}"
    incoming = Incoming(key=key, text=text, message_id=message_id, direct=not follow_up, is_dm=private,
                        author=user if key.shared else "", place=place)
    source = None if private else Source(team, channel, thread_ts, str(ts), user)
    opens = is_dm and agent_view and not thread_ts
    return Parsed(incoming, Target(channel, reply_in, team, user, is_dm), source, follow_up, opens)


@dataclass(frozen=True, slots=True)
class ForgetRequest:
    everything: bool
    """``/forget all``: every thread of the caller in the workspace."""
    key: ThreadKey
    team: str
    user: str


def parse_forget(body: dict[str, Any], scope: str) -> ForgetRequest | None:
    """``/forget`` or ``/forget all``; ``None`` for any other argument (answer with usage)."""
    arg = str(body.get("text") or "").strip().lower()
    if arg not in ("", "all"):
        return None
    team = str(body.get("team_id") or body.get("enterprise_id") or "unknown")
    user = str(body.get("user_id") or "")
    channel = str(body.get("channel_id") or "")
    return ForgetRequest(arg == "all", thread_key(scope, team, channel, user, None), team, user)
