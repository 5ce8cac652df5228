"""What a Slack message brings along: the earlier messages of its thread, and who wrote them.

The core calls the gather function made here (:meth:`SlackContext.gather_for`) when it answers the message,
under the conversation's lock, with the conversation's mark: the newest Slack message already brought in from
its thread (``<root>/<ts>``: a conversation may span threads under ``THREAD_SCOPE=user``). So a
redelivery the dedupe drops reads nothing, and two messages answered one after the other never bring the same
lines twice.

* **One read per turn.** A message inside a thread costs one ``conversations.replies`` call for what was
  written after the mark (and after what this process already read of the thread: messages read are cached per
  thread for :data:`THREAD_TTL`). At most ``THREAD_CONTEXT_MESSAGES`` of them go along, the newest; the core
  then fits them into its token budget, oldest dropped first. A top-level message has no thread yet: no read.
* **Who said what.** Display names come from ``users.info`` (display name, else real name; never an e-mail
  address), cached in this process for :data:`NAME_TTL`, or from a message's own ``user_profile`` when Slack
  includes one. Other bots' messages are labelled as bots'; the bot's own answers are in the conversation
  already and are skipped. Mentions of people become ``@name``.
* **A channel the user has open** (:mod:`adapters.slack.agent`, for a DM that says "this channel", only where the
  allowlists permit that channel): one ``conversations.history`` call for its newest messages since the
  conversation's mark (at most :data:`CHANNEL_PAGE`), quoted the same way.
* **Rate limits.** Reads are urgent but worth only :data:`READ_WITHIN` seconds. When Slack refuses
  (``ratelimited``) or the read fails, the message is answered with what this process already read of the
  thread, and a WARNING says so.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.limits import DELIVERY_ERRORS, Delivery, SlackCalls, Undelivered, ratelimited
from adapters.slack.parse import Source
from bot.domain import Gather, Gathered, Quoted

log = logging.getLogger("threadkeeper.slack")

NAME_TTL = 3600.0
"""Seconds a display name is trusted before ``users.info`` is asked again."""
THREAD_TTL = 900.0
"""Seconds the messages read of a thread are kept in this process."""
CACHE_THREADS = 500
"""Threads whose messages this process keeps at most (the least recently used go first)."""
READ_WITHIN = 3.0
"""How long reading a thread or a name may wait for Slack's rate limits before the answer goes without it."""
PAGE = 200
"""Messages asked for in one ``conversations.replies`` call."""
CHANNEL_PAGE = 15
"""Newest messages read of a channel the user has open (Slack's cap for apps outside the Marketplace)."""
SOMEONE = "someone"
"""The name of a person ``users.info`` would not tell."""
SKIPPED_SUBTYPES = frozenset({"channel_join", "channel_leave", "group_join", "group_leave", "message_deleted",
                              "message_changed", "channel_topic", "channel_purpose", "channel_name",
                              "pinned_item", "unpinned_item", "reminder_add", "tombstone"})
"""Thread entries that are not someone writing."""
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def after(ts: str, mark: str) -> bool:
    """Whether Slack timestamp ``ts`` is newer than ``mark`` ("" is older than everything)."""
    return _number(ts) > _number(mark)


def newest(*stamps: str) -> str:
    return max((s for s in stamps if s), key=_number, default="")


def _number(ts: str) -> Decimal:
    try:
        return Decimal(ts) if ts else Decimal(-1)
    except InvalidOperation:
        return Decimal(-1)


@dataclass
class _Thread:
    """What this process read of one thread."""

    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    """By ``ts``."""
    upto: str = ""
    """Everything up to this timestamp was read."""
    expires: float = 0.0


class SlackContext:
    """Reads threads and names for one adapter, each with the client of the workspace it is in (its token)."""

    def __init__(self, calls: SlackCalls, *, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.calls = calls
        self.limit = limit
        """``THREAD_CONTEXT_MESSAGES``: 0 reads no thread at all."""
        self._bot_users: dict[str, str] = {}
        """The bot's user id in each workspace it is in -> its name there."""
        self._bot_ids: set[str] = set()
        self._clock = clock
        self._names: dict[str, tuple[str, bool, float]] = {}
        self._named: dict[str, set[str]] = {}
        """The people named in :attr:`_names`, by workspace (:meth:`forget_team`)."""
        self._threads: OrderedDict[tuple[str, str, str], _Thread] = OrderedDict()
        """By (workspace, channel, thread root)."""

    def identify(self, user_id: str, bot_id: str, name: str) -> None:
        """The bot itself in a workspace (``auth.test``): its messages are skipped, mentions of it read as ``@name``."""
        if user_id:
            self._bot_users[user_id] = name
        if bot_id:
            self._bot_ids.add(bot_id)

    def forget_team(self, team: str) -> None:
        """A workspace that removed the app: the names and thread messages read there are dropped."""
        for user in self._named.pop(team, set()):
            self._names.pop(user, None)
        for key in [k for k in self._threads if k[0] == team]:
            del self._threads[key]

    def gather_for(self, source: Source, digest: str, *, speaker: bool, client: AsyncWebClient) -> Gather:
        """The core's gather function for one message (see the module docstring)."""

        async def nobody() -> str:
            return ""

        async def nothing() -> tuple[Quoted, ...]:
            return ()

        async def gather(mark: str) -> Gathered:
            # The mark is "<thread root>/<ts>": a conversation may span several threads (THREAD_SCOPE=user or
            # channel), and a mark only says what was brought in from its own thread.
            thread = source.root or source.ts
            seen_in, _, seen = mark.rpartition("/")
            since = seen if seen_in == thread else ""
            in_thread = bool(source.root and source.root != source.ts and self.limit)
            who, context = await asyncio.gather(
                self.name(source.team, source.user, client) if speaker else nobody(),
                self._context(source, since, digest, client) if in_thread else nothing())
            return Gathered(context, f"{thread}/{newest(since, source.ts)}", who)

        return gather

    # -- names -------------------------------------------------------------------------------------
    async def name(self, team: str, user: str, client: AsyncWebClient) -> str:
        """A person's display name ("someone" when Slack will not say)."""
        cached = self._names.get(user)
        if cached is not None and cached[2] > self._clock():
            return cached[0]
        await self._look_up(team, [user], client)
        cached = self._names.get(user)
        return cached[0] if cached is not None else SOMEONE

    async def _look_up(self, team: str, users: Iterable[str], client: AsyncWebClient) -> None:
        now = self._clock()
        missing = sorted({u for u in users if u and (u not in self._names or self._names[u][2] <= now)})
        if missing:
            await asyncio.gather(*(self._user_info(team, u, client) for u in missing))

    async def _user_info(self, team: str, user: str, client: AsyncWebClient) -> None:
        delivery = Delivery(team, "-", time.monotonic() + READ_WITHIN)
        try:
            response = await self.calls.urgent(delivery, "users.info", lambda: client.users_info(user=user))
        except DELIVERY_ERRORS as exc:
            log.info("could not look up a Slack user's name (%s); calling them %r", _error(exc), SOMEONE)
            return
        info = response.get("user")
        if isinstance(info, dict):
            self._learn(team, user, info.get("profile"), fallback=info, is_bot=bool(info.get("is_bot")))

    def _learn(self, team: str, user: str, profile: Any, *, fallback: dict[str, Any] | None = None,
               is_bot: bool = False) -> None:
        """Keep a name from a profile: display name, else real name, else the handle. Never an e-mail address."""
        profile = profile if isinstance(profile, dict) else {}
        fallback = fallback or {}
        for candidate in (profile.get("display_name"), profile.get("real_name"), fallback.get("real_name"),
                          fallback.get("name")):
            if isinstance(candidate, str) and candidate.strip() and "@" not in candidate:
                self._names[user] = (candidate.strip(), is_bot, self._clock() + NAME_TTL)
                self._named.setdefault(team, set()).add(user)
                return

    # -- a channel the user has open (adapters.slack.agent) -----------------------------------------------
    async def channel(self, team: str, channel: str, since: str, digest: str,
                      client: AsyncWebClient) -> tuple[tuple[Quoted, ...], str]:
        """The newest messages of ``channel`` written after ``since`` (at most ``THREAD_CONTEXT_MESSAGES`` and
        :data:`CHANNEL_PAGE`), quoted, with the newest ``ts`` read; nothing new when Slack will not say."""
        if not self.limit:
            return (), since
        params: dict[str, Any] = {"channel": channel, "limit": min(self.limit, CHANNEL_PAGE)}
        if since:
            params["oldest"] = since
        delivery = Delivery(team, digest, time.monotonic() + READ_WITHIN)
        try:
            response = await self.calls.urgent(delivery, "conversations.history",
                                               lambda: client.conversations_history(**params))
        except DELIVERY_ERRORS as exc:
            log.warning("could not read the Slack channel the user has open for %s (%s)", digest, _error(exc))
            return (), since
        got = sorted((m for m in response.get("messages") or [] if isinstance(m, dict) and m.get("ts")),
                     key=lambda m: _number(m["ts"]))
        readable = [m for m in got if self._readable(m)]
        await self._look_up(team, {str(m["user"]) for m in readable if m.get("user") and not _by_bot(m)}, client)
        return tuple(self._quote(m) for m in readable), newest(since, *(str(m["ts"]) for m in got))

    # -- threads -----------------------------------------------------------------------------------
    async def _context(self, source: Source, mark: str, digest: str, client: AsyncWebClient) -> tuple[Quoted, ...]:
        assert source.root is not None
        messages = await self._read(source, mark, digest, client)
        earlier = [m for m in messages
                   if after(m["ts"], mark) and after(source.ts, m["ts"]) and self._readable(m)][-self.limit:]
        for message in earlier:
            if message.get("user") and message.get("user_profile"):
                self._learn(source.team, str(message["user"]), message["user_profile"])
        # Authors are looked up (cache misses only); people merely mentioned are named only when already known.
        await self._look_up(source.team, {str(m["user"]) for m in earlier if m.get("user") and not _by_bot(m)},
                            client)
        return tuple(self._quote(m) for m in earlier)

    async def _read(self, source: Source, mark: str, digest: str, client: AsyncWebClient) -> list[dict[str, Any]]:
        """The thread's messages after ``mark``, as far as Slack lets us read them now (oldest first)."""
        key = (source.team, source.channel, str(source.root))
        now = self._clock()
        thread = self._threads.get(key)
        if thread is None or thread.expires <= now:
            thread = _Thread()
        self._threads[key] = thread
        self._threads.move_to_end(key)
        while len(self._threads) > CACHE_THREADS:
            self._threads.popitem(last=False)
        since = newest(mark, thread.upto)
        if not after(source.ts, since):
            return self._since(thread, mark)  # everything before this message was read already
        params: dict[str, Any] = {"channel": source.channel, "ts": source.root, "limit": PAGE}
        if since:
            params["oldest"] = since
        delivery = Delivery(source.team, digest, time.monotonic() + READ_WITHIN)
        try:
            response = await self.calls.urgent(delivery, "conversations.replies",
                                               lambda: client.conversations_replies(**params))
        except DELIVERY_ERRORS as exc:
            known = self._since(thread, mark)
            reason = "rate-limited" if isinstance(exc, Undelivered) or ratelimited(exc) else _error(exc)
            log.warning("could not read the Slack thread of %s (%s); answering with the %d earlier messages "
                        "already read", digest, reason, len(known))
            return known
        got = [m for m in response.get("messages") or [] if isinstance(m, dict) and m.get("ts")]
        for message in got:
            thread.messages[str(message["ts"])] = message
        if not response.get("has_more"):
            thread.upto = newest(thread.upto, source.ts)
        thread.expires = now + THREAD_TTL
        return self._since(thread, mark)

    @staticmethod
    def _since(thread: _Thread, mark: str) -> list[dict[str, Any]]:
        return sorted((m for ts, m in thread.messages.items() if after(ts, mark)), key=lambda m: _number(m["ts"]))

    def _readable(self, message: dict[str, Any]) -> bool:
        """Someone else writing (not the bot itself, not a join or an edit notice)."""
        if message.get("subtype") in SKIPPED_SUBTYPES:
            return False
        if message.get("user") in self._bot_users or message.get("bot_id") in self._bot_ids:
            return False
        return bool(str(message.get("text") or "").strip() or message.get("files"))

    def _quote(self, message: dict[str, Any]) -> Quoted:
        text = self._readable_text(str(message.get("text") or ""))
        files = [str(f.get("name") or f.get("title") or "a file") for f in message.get("files") or []
                 if isinstance(f, dict)]
        if files:
            text = " ".join(p for p in (text, *(f"[file: {name}]" for name in files)) if p)
        if _by_bot(message):
            raw = message.get("bot_profile")
            profile = raw if isinstance(raw, dict) else {}
            author = str(profile.get("name") or message.get("username") or "a bot")
            return Quoted(author, text, is_bot=True)
        user = str(message.get("user") or "")
        name, is_bot, _ = self._names.get(user, (SOMEONE, False, 0.0))
        return Quoted(name, text, is_bot=is_bot, user=user)

    def _readable_text(self, text: str) -> str:
        """Mentions read as names: ``<@U1>`` becomes ``@Ada`` (``@someone`` when the name is not known here)."""
        def name(match: re.Match[str]) -> str:
            user = match.group(1)
            if user in self._bot_users:
                return f"@{self._bot_users[user]}" if self._bot_users[user] else ""
            known = self._names.get(user)
            return f"@{known[0]}" if known else f"@{SOMEONE}"

        return _MENTION.sub(name, text).strip()


def _by_bot(message: dict[str, Any]) -> bool:
    return bool(message.get("bot_id") or message.get("subtype") == "bot_message")


def _error(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        data = exc.response.data
        return str(data.get("error") or "an error") if isinstance(data, dict) else f"HTTP {exc.response.status_code}"
    return type(exc).__name__
