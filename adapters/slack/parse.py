"""Slack payloads -> :class:`~bot.domain.Incoming`: which events deserve an answer, and where it goes.

Pure functions over the JSON Slack sends, so the rules are easy to read in one place:

* answered: ``message`` events in a DM (``channel_type == "im"``) and ``app_mention`` events;
* ignored: anything from a bot (``bot_id``/``bot_profile``), the bot's own user, events without a
  user, and message subtypes (edits, deletions, joins, ...) except the few that are still a person
  writing (:data:`ANSWERED_SUBTYPES`).

The thread key follows ``THREAD_SCOPE``: ``user`` (default) is team + channel + user; ``thread``
puts the Slack thread into the channel part (``C1/1700000000.000100``); ``channel`` shares one
conversation per channel (user ``*``). A top-level DM is its own thread, so under ``thread`` scope
top-level DMs share the DM channel's key instead of starting a conversation per message.

:attr:`Incoming.is_dm <bot.domain.Incoming.is_dm>` is set for DM channels (their ids start with ``D``),
which pass the core's channel allowlists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from adapters.kit.text import strip_mentions
from bot.domain import Incoming, ThreadKey

PLATFORM = "slack"

ANSWERED_SUBTYPES = frozenset({"file_share", "thread_broadcast"})
"""Message subtypes that are still a person writing to the bot; every other subtype is ignored."""


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
class Parsed:
    incoming: Incoming
    target: Target


def thread_key(scope: str, team: str, channel: str, user: str, thread_root: str | None) -> ThreadKey:
    """The conversation a message belongs to under ``THREAD_SCOPE``.

    ``thread_root`` is the Slack thread's root ``ts``, or ``None`` for a message that is not part of
    a Slack thread (a top-level DM).
    """
    if scope == "thread" and thread_root:
        return ThreadKey(PLATFORM, team, f"{channel}/{thread_root}", user)
    if scope == "channel":
        return ThreadKey(PLATFORM, team, channel, "*")
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


def parse_event(body: dict[str, Any], bot_user_id: str | None, scope: str) -> Parsed | None:
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
    if kind == "message":
        if event.get("channel_type") != "im":
            return None
        is_dm, reply_in = True, thread_ts
    elif kind == "app_mention":
        is_dm, reply_in = False, thread_ts or ts
    else:
        return None
    team, user = team_of(body), str(event["user"])
    key = thread_key(scope, team, str(channel), user, reply_in)
    text = strip_bot_mention(str(event.get("text") or ""), bot_user_id)
    message_id = str(body.get("event_id") or f"{channel}:{ts}")
    # A DM passes channel allowlists; Slack DM channel ids start with "D" (an app_mention may come from one).
    private = is_dm or str(channel).startswith("D")
    incoming = Incoming(key=key, text=text, message_id=message_id, direct=True, is_dm=private)
    return Parsed(incoming, Target(str(channel), reply_in, team, user, is_dm))


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
