"""Slack's agent messaging experience: suggested prompts, thread titles, and the channel the user is looking at.

Under the manifest's ``agent_view`` (``SLACK_AGENT_VIEW``), and for the older assistant pane (``assistant_view``):

* **Suggested prompts.** ``app_home_opened`` on the ``messages`` tab is "the user opened the agent": its prompts
  are set with ``assistant.threads.setSuggestedPrompts`` for the DM channel *without* ``thread_ts`` (Slack
  puts them at the top of the agent conversation; a ``thread_ts`` is the older pane's shape and makes the call
  fail silently for an agent app). They are the profile's (``PROFILES_FILE``, resolved for that DM), else
  :data:`SUGGESTED_PROMPTS`; Slack shows at most :data:`MAX_PROMPTS`.
* **Titles.** The first message of a thread names it with ``assistant.threads.setTitle`` (:func:`title_for`: its
  first few words): a top-level DM under ``agent_view`` (it opens its thread), or the first message of an
  assistant-pane thread this process saw start. Once per thread, never for a redelivery.
* **"This channel".** ``app_context_changed`` (agent) and ``assistant_thread_context_changed`` /
  ``assistant_thread_started`` (pane) say which channel the user is looking at; it is kept in this process,
  per person, for :data:`VIEW_TTL` (at most :data:`VIEWS_MAX` people). Only a DM that says "this channel"
  gets it, as one quoted line after the context (:func:`channel_hint`: material, not the user's words, so it
  neither counts against ``MAX_INPUT_CHARS`` nor is kept in the stored turns), and only when the allowlists
  (``ALLOWED_SLACK_TEAMS`` / ``ALLOWED_SLACK_CHANNELS``) would let the bot answer there: then the channel's
  newest messages come along as quoted material, read when the message is answered
  (:meth:`~adapters.slack.context.SlackContext.channel`, from the conversation's mark on). Otherwise the line
  says the channel is off limits without naming it, and nothing of it is read.

Every listener only records or starts a task of the adapter's own (:class:`~adapters.kit.tasks.InFlight`):
Slack calls are made outside the ack, paced through :class:`~adapters.slack.limits.SlackCalls`, with the
request's own client (Bolt's ``context.client``, the workspace's token).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_sdk.web.async_client import AsyncWebClient

from adapters.kit.tasks import InFlight
from adapters.slack.context import SlackContext
from adapters.slack.limits import DELIVERY_ERRORS, Delivery, SlackCalls
from adapters.slack.parse import PLATFORM, Parsed, team_of
from adapters.slack.progress import ChannelStatus
from bot.config import Settings
from bot.core import Core
from bot.domain import Gather, Gathered, Incoming, Quoted, ThreadKey

log = logging.getLogger("threadkeeper.slack")

SLACK_AGENT_EVENTS: tuple[str, ...] = ("app_home_opened", "app_context_changed")
"""The agent experience's events (``agent_view``), registered by :meth:`SlackAgent.register`."""

SUGGESTED_PROMPTS: list[dict[str, str]] = [
    {"title": "Explain some code", "message": "Can you explain what this code does?"},
    {"title": "Draft a message", "message": "Help me write a short, friendly announcement for my team."},
    {"title": "Start over", "message": "Let's start a new topic."},
]
"""The prompts offered where no profile has its own (the manifest's ``agent_view`` lists the same)."""
MAX_PROMPTS = 4
"""Slack shows at most four suggested prompts."""

VIEW_TTL = 1800.0
"""Seconds the channel a person looked at is remembered."""
VIEWS_MAX = 10_000
"""People (and pane threads awaiting a title) remembered at most; the least recently seen go first."""
TITLE_WORDS = 6
TITLE_CHARS = 60
CALL_WITHIN = 5.0
"""How long a title or the prompts may wait for Slack's rate limits (they are courtesies)."""

_THIS_CHANNEL = re.compile(r"\bthis\s+channel\b", re.IGNORECASE)
_LABELLED = re.compile(r"<[^>|]*\|([^>]*)>")
"""A link, channel or user group with its label (``<https://x.test|the docs>``): the label is kept."""
_MARKUP = re.compile(r"<[^>]*>|[*_~`>#]+")

V = TypeVar("V")


class Recent(Generic[V]):
    """A small map whose entries expire after ``ttl`` seconds, the oldest dropped beyond ``size``."""

    def __init__(self, ttl: float, size: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.size, self._clock = ttl, size, clock
        self._items: OrderedDict[tuple[str, ...], tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: tuple[str, ...], value: V) -> None:
        self._items[key] = (self._clock() + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def get(self, key: tuple[str, ...]) -> V | None:
        found = self._items.get(key)
        if found is None or found[0] <= self._clock():
            self._items.pop(key, None)
            return None
        return found[1]

    def pop(self, key: tuple[str, ...]) -> V | None:
        value = self.get(key)
        self._items.pop(key, None)
        return value


def title_for(text: str) -> str:
    """A thread's title from its first message: its first few words, without Slack markup."""
    words = _MARKUP.sub(" ", _LABELLED.sub(r"\1", text)).split()
    title = " ".join(words[:TITLE_WORDS])
    if len(title) > TITLE_CHARS:
        title = title[: TITLE_CHARS - 1].rstrip() + "…"
    elif len(words) > TITLE_WORDS:
        title += "…"
    return title or "New conversation"


def refers_to_this_channel(text: str) -> bool:
    """Whether the user's words point at the channel they are looking at ("summarise this channel")."""
    return _THIS_CHANNEL.search(text) is not None


NOTE_AUTHOR = "Slack"
"""Who "wrote" the "this channel" note, quoted with the context (never the user's own words)."""


def channel_hint(channel: str, allowed: bool) -> str:
    """The one line the model gets about "this channel"."""
    if allowed:
        return (f'"This channel" in the user\'s message is the channel they have open, <#{channel}>; its newest '
                "messages the bot could read are quoted above.")
    return '"This channel" in the user\'s message is a channel this bot is not allowed to read or answer in.'


def viewed_channel(body: dict[str, Any]) -> tuple[str, str] | None:
    """``(user, channel)`` a context event reports ("" channel: the user looks at no channel), or ``None``.

    ``app_context_changed`` names its user in ``event.user``; Slack's own example carries it only in the
    envelope's ``authorizations`` (the one that is not a bot), which is read when the event has none.
    """
    event = body.get("event") or {}
    if event.get("type") == "app_context_changed":
        entities = (event.get("context") or {}).get("entities") or []
        channel = ""
        for entity in entities:  # ordered by relevance: the first channel named wins
            if not isinstance(entity, dict):
                continue
            value = entity.get("value")
            if entity.get("type") == "slack#/types/channel_id" and isinstance(value, str):
                channel = value
            elif entity.get("type") == "slack#/types/message_context" and isinstance(value, dict):
                channel = str(value.get("channel_id") or "")
            if channel:
                break
        people = [a.get("user_id") for a in body.get("authorizations") or [] if not a.get("is_bot")]
        user = str(event.get("user") or next(iter(people), None) or "")
    else:  # assistant_thread_started / assistant_thread_context_changed
        thread = event.get("assistant_thread") or {}
        user = str(thread.get("user_id") or "")
        channel = str((thread.get("context") or {}).get("channel_id") or "")
    return (user, channel) if user else None


class SlackAgent:
    """The agent experience for one adapter: its listeners, what they remember, and the calls they start."""

    def __init__(self, core: Core, calls: SlackCalls, in_flight: InFlight, context: SlackContext, settings: Settings,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.core = core
        self.calls = calls
        self.in_flight = in_flight
        self.context = context
        """Reads the channel the user has open, when they ask about it and the allowlists permit it."""
        self.agent_view = settings.slack_agent_view
        self.views: Recent[str] = Recent(VIEW_TTL, VIEWS_MAX, clock=clock)
        """(team, user) -> the channel they look at."""
        self.untitled: Recent[bool] = Recent(VIEW_TTL, VIEWS_MAX, clock=clock)
        """(channel, thread_ts) of assistant-pane threads started here and not named yet."""
        self.channel_status = ChannelStatus()
        """Workspaces that refused a status in channel threads."""
        self._told_off = False
        """The operator was told that SLACK_AGENT_VIEW is off under an app on agent_view."""

    def register(self, app: AsyncApp, assistant: AsyncAssistant) -> None:
        app.event("app_home_opened")(self._on_home_opened)
        app.event("app_context_changed")(self._on_context)
        # Ours instead of Bolt's default, which would store the context with Slack calls inside the ack.
        assistant.thread_context_changed(self._on_context)

    # ---- listeners (before the ack: record, or start a task) -------------------------------------------
    async def _on_home_opened(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        event = body.get("event") or {}
        channel, user = str(event.get("channel") or ""), str(event.get("user") or "")
        if event.get("tab") == "messages" and channel and user and context.client is not None:
            key = ThreadKey(PLATFORM, team_of(body), channel, user)
            self.in_flight.spawn(self._offer_prompts(context.client, key))

    async def _on_context(self, body: dict[str, Any]) -> None:
        agent_only = (body.get("event") or {}).get("type") == "app_context_changed"  # only apps on agent_view get it
        if agent_only and not self.agent_view and not self._told_off:
            self._told_off = True
            log.warning("Slack sends the agent experience's events (the manifest's agent_view) but SLACK_AGENT_VIEW "
                        "is off: top-level DMs are answered at the top level, not in threads of their own; set "
                        "SLACK_AGENT_VIEW=on")
        self.saw_context(body)

    def saw_context(self, body: dict[str, Any]) -> None:
        """Remember (or forget) the channel a context event says the user is looking at."""
        seen = viewed_channel(body)
        if seen is None:
            return
        user, channel = seen
        if channel:
            self.views.put((team_of(body), user), channel)
        else:
            self.views.pop((team_of(body), user))

    def thread_started(self, body: dict[str, Any]) -> None:
        """An assistant-pane thread opened: its first message will name it; remember what the user looks at."""
        thread = (body.get("event") or {}).get("assistant_thread") or {}
        if thread.get("channel_id") and thread.get("thread_ts"):
            self.untitled.put((str(thread["channel_id"]), str(thread["thread_ts"])), True)
        self.saw_context(body)

    # ---- a message on its way to the core ----------------------------------------------------------------
    def on_message(self, parsed: Parsed, client: AsyncWebClient | None, *, retried: bool) -> Parsed:
        """Name the thread the message opens (a task), and give it the "this channel" line if it asks for one."""
        target = parsed.target
        if target.is_dm and target.thread_ts and client is not None and not retried:
            first = parsed.opens_thread or self.untitled.pop((target.channel, target.thread_ts)) is not None
            if first:
                self.in_flight.spawn(self._name_thread(client, parsed, title_for(parsed.incoming.text)))
        channel, allowed = self.this_channel(parsed.incoming)
        if not channel:
            return parsed
        # The note is quoted material, not the user's words: it does not count against MAX_INPUT_CHARS and is not
        # kept in the stored turns; after the channel's messages, so the token budget cuts them first.
        note = Quoted(NOTE_AUTHOR, channel_hint(channel, allowed), is_bot=True)
        incoming = parsed.incoming
        if allowed and client is not None and incoming.gather is None:
            incoming = dataclasses.replace(incoming, gather=self._reader(target.team, channel, incoming, client, note))
        else:
            incoming = dataclasses.replace(incoming, context=(*incoming.context, note))
        return dataclasses.replace(parsed, incoming=incoming)

    def this_channel(self, incoming: Incoming) -> tuple[str, bool]:
        """For a DM to the agent that says "this channel": the channel the user has open, and whether the
        allowlists permit it; ``("", False)`` otherwise (nothing known, or written in a channel: there "this
        channel" is that one)."""
        if not incoming.is_dm or not refers_to_this_channel(incoming.text):
            return "", False
        key = incoming.key
        channel = self.views.get((key.workspace, incoming.author or key.user))
        if not channel or channel == key.channel.split("/", 1)[0]:
            return "", False  # nothing known, or this very DM: it is the conversation already
        there = ThreadKey(key.platform, key.workspace, channel, key.user)
        # Not a DM with the bot (another person's DM with the user, say): the channel allowlist applies.
        return channel, self.core.policy.allows(Incoming(key=there, text="", message_id="", is_dm=False))

    def _reader(self, team: str, channel: str, incoming: Incoming, client: AsyncWebClient, note: Quoted) -> Gather:
        """The core's gather for a "this channel" DM: the channel's newest messages since the conversation's mark
        (``<channel>/<ts>``: what it already brought in from that channel), then the note naming it."""
        async def gather(mark: str) -> Gathered:
            seen_in, _, seen = mark.rpartition("/")
            since = seen if seen_in == channel else ""
            quoted, upto = await self.context.channel(team, channel, since, incoming.key.digest, client)
            return Gathered((*quoted, note), f"{channel}/{upto}" if upto else mark)

        return gather

    def loading(self, parsed: Parsed, *, retried: bool) -> ChannelStatus | None:
        """Where a channel thread's answer may show the loading status (agent experience only; not on retries)."""
        return self.channel_status if self.agent_view and not parsed.target.is_dm and not retried else None

    # ---- the calls (in tasks of their own) ---------------------------------------------------------------------
    async def prompts_for(self, key: ThreadKey) -> list[dict[str, str]]:
        """The profile's suggested prompts for ``key``, else the defaults; at most :data:`MAX_PROMPTS`."""
        profile = await self.core.profiles.resolve(key)
        prompts = [{"title": p.title, "message": p.message} for p in profile.suggested_prompts]
        return (prompts or SUGGESTED_PROMPTS)[:MAX_PROMPTS]

    async def _offer_prompts(self, client: AsyncWebClient, key: ThreadKey) -> None:
        prompts = await self.prompts_for(key)
        delivery = Delivery(key.workspace, key.digest, time.monotonic() + CALL_WITHIN)
        try:
            await self.calls.urgent(delivery, "assistant.threads.setSuggestedPrompts", lambda: (
                client.assistant_threads_setSuggestedPrompts(channel_id=key.channel, prompts=prompts)))
        except DELIVERY_ERRORS as exc:
            log.warning("could not offer suggested prompts: %s", exc)

    async def _name_thread(self, client: AsyncWebClient, parsed: Parsed, title: str) -> None:
        target = parsed.target
        thread = str(target.thread_ts)
        delivery = Delivery(target.team, parsed.incoming.key.digest, time.monotonic() + CALL_WITHIN)
        try:
            await self.calls.urgent(delivery, "assistant.threads.setTitle", lambda: (
                client.assistant_threads_setTitle(channel_id=target.channel, thread_ts=thread, title=title)))
        except DELIVERY_ERRORS as exc:
            log.info("could not name an assistant thread: %s", exc)
