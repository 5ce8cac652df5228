"""A loopback fake of the Slack Web API, of ``response_url`` endpoints and of the Socket Mode websocket.

In the style of bolt-python's ``tests/mock_web_api_server``: the real ``AsyncWebClient`` (with
``base_url=fake.api_url``) and the real Socket Mode client talk to it over loopback, and every call is
recorded with its payload. Messages are kept as Slack would show them (``chat.postMessage``,
``chat.update``, ``chat.startStream/appendStream/stopStream``), so tests can read what a user would
see in a channel or thread.

Waiting is event driven: :meth:`FakeSlack.wait_for` blocks on a condition that every recorded call,
response and Socket Mode ack notifies, with a bounded timeout.

People: ``users.info`` answers for any ``U…`` id (a made-up profile, or the one :meth:`FakeSlack.add_user`
gave), with an e-mail address the bot must never use. ``conversations.replies`` shows a thread as people
wrote it (:meth:`FakeSlack.user_says`, :meth:`FakeSlack.bot_says`) together with the bot's own messages.

Rate limits are off until a test installs one (:meth:`FakeSlack.rate_limit`,
:meth:`FakeSlack.rate_limit_channel`); a call over its limit is answered as Slack answers it (HTTP 429,
``Retry-After``, ``{"ok": false, "error": "ratelimited"}``) and has no effect. See ``rate_limits.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any

from aiohttp import WSMsgType, web

from .file_hosts import SlackFileHost
from .rate_limits import Clock, Refusal, SlackLimits
from .slack_oauth import FakeOAuth

BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
TEAM_ID = "T0TEAM"
APP_ID = "A0APP"

JSON = dict[str, Any]


@dataclass
class Call:
    method: str
    payload: JSON
    token: str | None
    at: float = 0.0
    """When it arrived (the fake's monotonic clock)."""
    refused: bool = False
    """Answered 429 ``ratelimited`` (and had no effect)."""


@dataclass
class Message:
    """A message as a Slack client would show it."""

    channel: str
    ts: str
    text: str
    thread_ts: str | None
    streamed: bool = False
    streaming: bool = False
    updates: int = 0
    history: list[str] = field(default_factory=list)
    """Every text the message showed, oldest first (placeholder edits, stream appends)."""


def _chunk_text(payload: JSON) -> str:
    text = str(payload.get("markdown_text") or "")
    chunks = payload.get("chunks") or []
    if isinstance(chunks, str):
        chunks = json.loads(chunks)
    for chunk in chunks:
        if chunk.get("type") == "markdown_text":
            text += str(chunk.get("text", ""))
    return text


class FakeSlack:
    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.calls: list[Call] = []
        self.messages: dict[str, Message] = {}
        self.responses: list[tuple[str, JSON]] = []
        """Posts to response URLs: (path name, JSON body)."""
        self.acks: list[JSON] = []
        """Socket Mode acknowledgements received from the client."""
        self.stream_error: str | None = None
        """When set, ``chat.startStream`` answers ``{"ok": false, "error": stream_error}``."""
        self.statuses: list[tuple[str, str, str]] = []
        """``assistant.threads.setStatus`` calls: (channel, thread_ts, status)."""
        self.loading: list[list[str]] = []
        """The ``loading_messages`` of each accepted ``setStatus`` call ([] when it had none)."""
        self.status_in_channels = True
        """Whether ``setStatus`` works outside DMs (False: ``channel_type_not_supported`` there)."""
        self.titles: dict[tuple[str, str], str] = {}
        """``assistant.threads.setTitle``: the title of each (DM channel, thread_ts)."""
        self.prompts: dict[tuple[str, str], list[JSON]] = {}
        """``assistant.threads.setSuggestedPrompts``: the prompts of each (channel, thread_ts or "": the agent's
        conversation under ``agent_view``)."""
        self.socket_connections = 0
        self.token_teams: dict[str, str] = {}
        """Which workspace a token belongs to (rate limits are kept per team); unknown tokens: ``TEAM_ID``."""
        self.oauth = FakeOAuth(self.token_teams, BOT_USER_ID, APP_ID)
        """The install flow: consent codes and ``oauth.v2.access`` (``slack_oauth.py``)."""
        self.limits = SlackLimits(clock)
        self.files = SlackFileHost(lambda: self.base)
        """Private file downloads (``url_private_download``): see ``file_hosts.py``."""
        self.users: dict[str, JSON] = {}
        """Profiles given by :meth:`add_user`; ``users.info`` makes one up for any other ``U…`` id."""
        self.history: list[JSON] = []
        """Messages others wrote in channels (:meth:`user_says`, :meth:`bot_says`), oldest first."""
        self.not_in: set[str] = set()
        """Channels the bot is not a member of: reading them answers ``not_in_channel``."""
        self._failures: dict[str, list[str]] = {}
        self._stalls: dict[str, list[float]] = {}
        self._changed = asyncio.Condition()
        self._sockets: list[web.WebSocketResponse] = []
        self._runner: web.AppRunner | None = None
        self._base: str | None = None

    # ---- addresses ---------------------------------------------------------------------------
    @property
    def base(self) -> str:
        if self._base is None:
            raise RuntimeError("FakeSlack is not started")
        return self._base

    @property
    def api_url(self) -> str:
        """The Web API base URL (``SLACK_API_URL``); ends with a slash like Slack's own."""
        return f"{self.base}/api/"

    def response_url(self, name: str = "") -> str:
        return f"{self.base}/response/{name or uuid.uuid4().hex[:8]}"

    # ---- test helpers ------------------------------------------------------------------------
    def count(self, method: str) -> int:
        return sum(1 for c in self.calls if c.method == method)

    def payloads(self, method: str) -> list[JSON]:
        return [c.payload for c in self.calls if c.method == method]

    def fail_next(self, method: str, error: str, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer ``{"ok": false, "error": error}``."""
        self._failures.setdefault(method, []).extend([error] * times)

    def stall_next(self, method: str, seconds: float) -> None:
        """The next call of ``method`` is carried out at once but answered only after ``seconds`` (a slow Slack)."""
        self._stalls.setdefault(method, []).append(seconds)

    # ---- people and what they wrote ----------------------------------------------------------
    def add_user(self, user_id: str, name: str, *, bot: bool = False) -> None:
        """A person (or a bot user) with this display name."""
        self.users[user_id] = _profile(user_id, name, bot=bot)

    def name_of(self, user_id: str) -> str:
        """The display name ``users.info`` gives for ``user_id``."""
        return str(self._user(user_id)["profile"]["display_name"])

    def _user(self, user_id: str) -> JSON:
        if user_id not in self.users:
            made_up = NAMES[int(hashlib.sha256(user_id.encode()).hexdigest(), 16) % len(NAMES)]
            self.users[user_id] = _profile(user_id, f"{made_up} {user_id[-3:].lower()}")
        return self.users[user_id]

    def user_says(self, text: str, *, user: str = "U1USER", channel: str = "C1CHAN", thread_ts: str | None = None,
                  mention: bool = False, channel_type: str = "channel") -> JSON:
        """A person writes in a channel: kept for ``conversations.replies``, and returned as the event Slack
        delivers (``message.channels``, or with ``mention`` the ``app_mention``; ``text`` carries any mention)."""
        ts = next_ts()
        message: JSON = {"type": "message", "user": user, "text": text, "ts": ts, "team": TEAM_ID,
                         "client_msg_id": str(uuid.uuid4()), "blocks": _rich_text(text)}
        if thread_ts:
            message["thread_ts"] = thread_ts
        self.history.append({**message, "channel": channel})
        event: JSON = {**message, "channel": channel, "event_ts": ts}
        if mention:
            event["type"] = "app_mention"
        else:
            event["channel_type"] = channel_type
        return event

    def bot_says(self, text: str, *, name: str = "otherbot", channel: str = "C1CHAN",
                 thread_ts: str | None = None) -> JSON:
        """Another bot posts in a channel (kept for ``conversations.replies``); returns its message event."""
        ts = next_ts()
        message: JSON = {"type": "message", "subtype": "bot_message", "bot_id": "B9OTHER", "username": name,
                         "bot_profile": {"id": "B9OTHER", "name": name, "app_id": "A9OTHER"}, "text": text, "ts": ts}
        if thread_ts:
            message["thread_ts"] = thread_ts
        self.history.append({**message, "channel": channel})
        return {**message, "channel": channel, "event_ts": ts, "channel_type": "channel"}

    def in_thread(self, channel: str, thread_ts: str | None) -> list[Message]:
        """Messages the bot posted in one thread (``None``: top level), oldest first."""
        return [m for m in self.messages.values() if m.channel == channel and m.thread_ts == thread_ts]

    # ---- rate limits -------------------------------------------------------------------------
    def rate_limit(self, method: str, per_second: float, burst: int) -> None:
        """Limit ``method`` (or ``"response_url"``) per workspace: ``burst`` calls at once, then ``per_second``."""
        self.limits.per_method(method, per_second, burst)

    def rate_limit_channel(self, method: str, per_second: float = 1.0, burst: int = 1) -> None:
        """Limit ``method`` per channel as well (Slack: ``chat.postMessage`` about 1 a second per channel).

        For ``"response_url"`` the "channel" is the response URL, so this limits each URL on its own."""
        self.limits.per_channel(method, per_second, burst)

    @property
    def refused(self) -> list[Refusal]:
        """Every refusal: method, key (method, channel[, ts]), when, and the ``Retry-After`` it answered."""
        return self.limits.watch.refused

    def last_refusal(self, method: str, channel: str, ts: str | None = None) -> Refusal | None:
        """The refusal with the latest retry time for this method and channel (and message ts for updates)."""
        return self.limits.watch.last.get(self.limits.key(method, channel, ts))

    def early_retries(self) -> list[Call]:
        """Calls that came for the same method and channel (and ts, for calls aimed at a message) before the
        ``Retry-After`` of an earlier refusal had elapsed."""
        return list(self.limits.watch.early)

    def duplicate_posts(self) -> list[Message]:
        """Messages showing the same non-empty text as an earlier one in the same channel and thread."""
        seen: set[tuple[str, str | None, str]] = set()
        duplicates = []
        for msg in self.messages.values():
            key = (msg.channel, msg.thread_ts, msg.text)
            if msg.text and key in seen:
                duplicates.append(msg)
            seen.add(key)
        return duplicates

    def _admit(self, call: Call, channel: str, ts: str | None = None) -> web.Response | None:
        """The 429 to answer when ``call`` is over a limit (the call is then marked refused), else ``None``."""
        team = self.token_teams.get(call.token or "", TEAM_ID)
        retry_after = self.limits.admit(call, team=team, method=call.method, channel=channel, ts=ts, now=call.at)
        if retry_after is None:
            return None
        call.refused = True
        return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                 headers={"Retry-After": str(retry_after)})

    @property
    def open_sockets(self) -> int:
        return len(self._sockets)

    def replies(self) -> list[Message]:
        return list(self.messages.values())

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), within)

    async def push_event(self, payload: JSON, *, retry_attempt: int = 0, retry_reason: str = "") -> str:
        """Send one ``events_api`` envelope to the connected Socket Mode client; returns its envelope id."""
        if not self._sockets:
            raise RuntimeError("no Socket Mode client is connected")
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
            "payload": payload,
        }
        await self._sockets[-1].send_str(json.dumps(envelope))
        return envelope_id

    # ---- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # slack_sdk reads (users.info, conversations.replies) GET
        app.router.add_post("/response/{name}", self._response)
        app.router.add_get("/socket-mode", self._socket)
        self.files.install(app.router)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._base = f"http://127.0.0.1:{port}"
        return self._base

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ---- handlers ----------------------------------------------------------------------------
    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        payload: JSON
        if request.method == "GET":
            payload = dict(request.query)
        elif request.content_type == "application/json":
            payload = await request.json()
        else:
            # slack_sdk sends some methods' arguments (assistant.threads.setTitle) in the query string of a POST
            payload = {**request.query, **{k: v for k, v in (await request.post()).items() if isinstance(v, str)}}
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") or payload.get("token")
        if method == "oauth.v2.access":  # the app's credentials (HTTP Basic), not a token
            self.calls.append(Call(method, payload, None, at=self.clock()))
            granted = self.oauth.access(payload, auth)
            await self._notify()
            return web.json_response(granted)
        call = Call(method, payload, token, at=self.clock())
        self.calls.append(call)
        channel = str(payload.get("channel") or payload.get("channel_id") or "")
        refused = self._admit(call, channel, str(payload.get("ts") or "") or None)
        failures = self._failures.get(method)
        if refused is not None:
            await self._notify()
            return refused
        if failures:
            body: JSON = {"ok": False, "error": failures.pop(0)}
        else:
            body = self._answer(method, payload)
            if method == "auth.test":  # a token from the install flow speaks for its own team
                body["team_id"] = self.token_teams.get(token or "", TEAM_ID)
        await self._notify()
        if stalls := self._stalls.get(method):
            await asyncio.sleep(stalls.pop(0))
        return web.json_response(body)

    def _next_ts(self) -> str:
        """The bot's messages take timestamps from the same clock as the people's (:func:`next_ts`)."""
        return next_ts()

    def _answer(self, method: str, p: JSON) -> JSON:
        if method == "auth.test":
            return {"ok": True, "url": "https://fake.slack.test/", "team": "Fake", "user": "threadkeeper",
                    "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.base.replace("http://", "ws://") + "/socket-mode"}
        if method == "chat.postMessage":
            ts = self._next_ts()
            text = str(p.get("text") or p.get("markdown_text") or "")
            self.messages[ts] = Message(p["channel"], ts, text, p.get("thread_ts") or None, history=[text])
            return {"ok": True, "channel": p["channel"], "ts": ts, "message": {"text": text, "ts": ts}}
        if method == "chat.update":
            msg = self.messages.get(str(p.get("ts")))
            if msg is None:
                return {"ok": False, "error": "message_not_found"}
            msg.text = str(p.get("text") or p.get("markdown_text") or "")
            msg.updates += 1
            msg.history.append(msg.text)
            return {"ok": True, "channel": msg.channel, "ts": msg.ts, "text": msg.text}
        if method == "chat.startStream":
            if self.stream_error:
                return {"ok": False, "error": self.stream_error}
            ts = self._next_ts()
            text = _chunk_text(p)
            self.messages[ts] = Message(p["channel"], ts, text, p.get("thread_ts") or None, streamed=True,
                                        streaming=True, history=[text])
            return {"ok": True, "channel": p["channel"], "ts": ts}
        if method in ("chat.appendStream", "chat.stopStream"):
            msg = self.messages.get(str(p.get("ts")))
            if msg is None or not msg.streaming:
                return {"ok": False, "error": "message_not_in_streaming_state"}
            msg.text += _chunk_text(p)
            msg.history.append(msg.text)
            msg.streaming = method == "chat.appendStream"
            return {"ok": True, "channel": msg.channel, "ts": msg.ts}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._next_ts()}
        if method == "users.info":
            user_id = str(p.get("user") or "")
            if not user_id.startswith(("U", "W")):
                return {"ok": False, "error": "user_not_found"}
            return {"ok": True, "user": self._user(user_id)}
        if method == "conversations.replies":
            return self._replies(p)
        if method == "conversations.history":
            return self._history(p)
        if method.startswith("assistant.threads."):
            return self._assistant(method, p)
        return {"ok": True}

    def _assistant(self, method: str, p: JSON) -> JSON:
        """``assistant.threads.setStatus`` / ``setTitle`` / ``setSuggestedPrompts``, checked as Slack checks them."""
        problems = _assistant_problems(method, p)
        if problems:
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": problems}}
        channel, thread = str(p["channel_id"]), str(p.get("thread_ts") or "")
        if method == "assistant.threads.setStatus":
            if not self.status_in_channels and not channel.startswith("D"):
                return {"ok": False, "error": "channel_type_not_supported"}
            self.statuses.append((channel, thread, str(p["status"])))
            self.loading.append(list(_json_list(p.get("loading_messages"))))
        elif method == "assistant.threads.setTitle":
            if not channel.startswith("D"):
                return {"ok": False, "error": "not_allowed"}
            self.titles[(channel, thread)] = str(p["title"])
        elif method == "assistant.threads.setSuggestedPrompts":
            self.prompts[(channel, thread)] = [dict(x) for x in _json_list(p["prompts"])]
        return {"ok": True}

    def _history(self, p: JSON) -> JSON:
        """A channel's top-level messages as ``conversations.history`` shows them: newest first, after ``oldest``."""
        channel = str(p.get("channel") or "")
        if channel in self.not_in:
            return {"ok": False, "error": "not_in_channel"}
        found = [{k: v for k, v in m.items() if k != "channel"} for m in self.history
                 if m["channel"] == channel and m.get("thread_ts") in (None, m["ts"])]
        found.sort(key=lambda m: Decimal(m["ts"]), reverse=True)
        if p.get("oldest"):
            found = [m for m in found if Decimal(m["ts"]) > Decimal(str(p["oldest"]))]
        limit = int(p.get("limit") or 100)
        return {"ok": True, "messages": found[:limit], "has_more": len(found) > limit,
                "response_metadata": {"next_cursor": ""}}

    def _replies(self, p: JSON) -> JSON:
        """A thread as ``conversations.replies`` shows it: the parent, then the replies, oldest first."""
        channel, root = str(p.get("channel") or ""), str(p.get("ts") or "")
        found = [{k: v for k, v in m.items() if k != "channel"} for m in self.history
                 if m["channel"] == channel and root in (m["ts"], m.get("thread_ts"))]
        found += [{"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "text": m.text, "ts": m.ts,
                   "thread_ts": m.thread_ts} for m in self.messages.values()
                  if m.channel == channel and m.thread_ts == root]
        if not found:
            return {"ok": False, "error": "thread_not_found"}
        found.sort(key=lambda m: Decimal(m["ts"]))
        if p.get("oldest"):
            found = [m for m in found if Decimal(m["ts"]) > Decimal(str(p["oldest"]))]
        limit = int(p.get("limit") or 1000)
        return {"ok": True, "messages": found[:limit], "has_more": len(found) > limit,
                "response_metadata": {"next_cursor": ""}}

    async def _response(self, request: web.Request) -> web.Response:
        name, body = request.match_info["name"], await request.json()
        refused = self._admit(Call("response_url", body, None, at=self.clock()), name)
        if refused is not None:
            await self._notify()
            return refused
        self.responses.append((name, body))
        await self._notify()
        return web.Response(text="ok")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        self.socket_connections += 1
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1,
                                      "connection_info": {"app_id": APP_ID}}))
        await self._notify()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self.acks.append(json.loads(msg.data))
                    await self._notify()
        finally:
            self._sockets.remove(ws)
            await self._notify()
        return ws


def _json_list(value: Any) -> list[Any]:
    """A list argument, sent as JSON or as a JSON string in a form."""
    value = json.loads(value) if isinstance(value, str) else value
    return list(value) if isinstance(value, list) else []


def _assistant_problems(method: str, p: JSON) -> list[str]:
    """What Slack's ``invalid_arguments`` would list for an ``assistant.threads.*`` call."""
    required = {"assistant.threads.setStatus": ("channel_id", "thread_ts", "status"),
                "assistant.threads.setTitle": ("channel_id", "thread_ts", "title"),
                "assistant.threads.setSuggestedPrompts": ("channel_id", "prompts")}.get(method, ("channel_id",))
    problems = [f"[ERROR] missing required field: {name}" for name in required if p.get(name) is None]
    if method == "assistant.threads.setTitle" and not str(p.get("title") or "").strip():
        problems.append("[ERROR] title must not be empty")
    loading = _json_list(p.get("loading_messages"))
    if len(loading) > 10 or not all(isinstance(m, str) and m for m in loading):
        problems.append("[ERROR] loading_messages: at most 10 non-empty strings")
    if method == "assistant.threads.setSuggestedPrompts" and p.get("prompts") is not None:
        prompts = _json_list(p["prompts"])
        if not 1 <= len(prompts) <= 4 or not all(isinstance(x, dict) and x.get("title") and x.get("message")
                                                 for x in prompts):
            problems.append("[ERROR] prompts: 1 to 4 items, each with a title and a message")
    return problems


NAMES = ("Ada", "Bram", "Chidi", "Dana", "Emeka", "Freya", "Goran", "Hana", "Ines", "Jun")


def _profile(user_id: str, name: str, *, bot: bool = False) -> JSON:
    """A ``users.info`` user: a display name, a real name, and an e-mail address the bot must never use."""
    handle = name.lower().replace(" ", ".")
    return {"id": user_id, "team_id": TEAM_ID, "name": handle, "real_name": f"{name} Example", "is_bot": bot,
            "deleted": False, "profile": {"display_name": name, "real_name": f"{name} Example",
                                          "email": f"{handle}@example.com"}}


# ---- real Slack payload shapes, signed like Slack signs them --------------------------------------
_event_ids = itertools.count(1)
_message_ts = itertools.count(1)


def next_ts() -> str:
    """A fresh message timestamp for a user's message (distinct from the fake's own)."""
    return f"1710000000.{next(_message_ts):06d}"


def sign(body: str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The ``X-Slack-Signature`` headers for ``body`` (v0 HMAC-SHA256 of ``v0:{timestamp}:{body}``)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def event_envelope(event: JSON, *, event_id: str | None = None, team: str = TEAM_ID) -> JSON:
    """An Events API ``event_callback`` as Slack posts it."""
    stamp = float(event.get("event_ts") or event.get("ts") or time.time())
    return {
        "token": "legacy-verification-token",
        "team_id": team,
        "context_team_id": team,
        "context_enterprise_id": None,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_event_ids):08d}",
        "event_time": int(stamp),
        "authorizations": [{"enterprise_id": None, "team_id": team, "user_id": BOT_USER_ID, "is_bot": True,
                            "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
        "event_context": "4-eyJldCI6Im1lc3NhZ2UiLCJ0aWQiOiJUMFRFQU0ifQ",
    }


def _rich_text(text: str) -> list[JSON]:
    return [{"type": "rich_text", "block_id": "b1",
             "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}]}]


def dm_event(text: str, *, user: str = "U1USER", channel: str = "D1DM", thread_ts: str | None = None,
             ts: str | None = None, **extra: Any) -> JSON:
    """A ``message.im`` event: a person writing to the bot in a DM."""
    ts = ts or next_ts()
    event: JSON = {"client_msg_id": str(uuid.uuid4()), "type": "message", "text": text, "user": user, "ts": ts,
                   "blocks": _rich_text(text), "team": TEAM_ID, "channel": channel, "event_ts": ts,
                   "channel_type": "im"}
    if thread_ts:
        event["thread_ts"] = thread_ts
    event.update(extra)
    return event


def mention_event(text: str, *, user: str = "U1USER", channel: str = "C1CHAN", thread_ts: str | None = None,
                  ts: str | None = None) -> JSON:
    """An ``app_mention`` event; ``text`` should contain ``<@U0BOT>`` like Slack's does."""
    ts = ts or next_ts()
    event: JSON = {"client_msg_id": str(uuid.uuid4()), "type": "app_mention", "text": text, "user": user, "ts": ts,
                   "blocks": _rich_text(text), "team": TEAM_ID, "channel": channel, "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def command_form(command: str, text: str, *, response_url: str, user: str = "U1USER", channel: str = "D1DM",
                 team: str = TEAM_ID) -> dict[str, str]:
    """A slash command as Slack posts it (form-encoded)."""
    return {"token": "legacy-verification-token", "team_id": team, "team_domain": "fake", "channel_id": channel,
            "channel_name": "directmessage", "user_id": user, "user_name": "someone", "command": command,
            "text": text, "api_app_id": APP_ID, "is_enterprise_install": "false", "response_url": response_url,
            "trigger_id": "1337.42.abcdef"}
