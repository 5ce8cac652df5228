"""A loopback fake of Discord: the REST API (``/api/v10``) and a gateway websocket.

The real ``discord.py`` client talks to it: point ``discord.http.Route.BASE`` at :attr:`FakeDiscord.api_base`
(the adapter does that from ``DISCORD_API_BASE``); ``GET /gateway/bot`` hands out this server's websocket.
Every REST call is recorded in :attr:`FakeDiscord.calls` so tests can read what the bot sent, and tests push
gateway events (MESSAGE_CREATE, INTERACTION_CREATE, ...) with :meth:`FakeDiscord.dispatch` or the helpers.
Messages people sent that way are kept, so the bot can fetch one (``GET /channels/{id}/messages/{id}``) or read
a channel's history (``GET /channels/{id}/messages``), with content withheld as the gateway withholds it.
Per-channel rate limits on message edits and posts are off until a test installs them (:meth:`FakeDiscord.edit_limit`,
:meth:`FakeDiscord.post_limit`); they answer with Discord's headers and 429s (see ``rate_limits.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

from . import discord_payloads as p
from .discord_payloads import JSON
from .file_hosts import DiscordCdn
from .rate_limits import Clock, DiscordLimits, Refusal

T = TypeVar("T")
TOKEN = "fake-discord-token"
MESSAGE_CONTENT = 1 << 15
Handler = Callable[[web.Request, "re.Match[str]", Any], "web.Response | Awaitable[web.Response]"]


@dataclass
class Call:
    """One REST request as the bot sent it; ``path`` is relative to ``/api/v10``."""

    method: str
    path: str
    json: Any
    query: dict[str, str]
    at: float = field(default_factory=time.monotonic)
    refused: bool = False
    """Answered 429 by a rate limit (and had no effect)."""


@dataclass
class _Session:
    ws: web.WebSocketResponse
    shard: tuple[int, int] | None = None
    seq: int = 0
    identify: JSON | None = None


class FakeDiscord:
    def __init__(self, *, token: str = TOKEN, shards: int = 1, clock: Clock = time.monotonic) -> None:
        self.token = token
        self.clock = clock
        self.limits = DiscordLimits(clock)
        self.recommended_shards = shards
        self.bot = p.user(p.snowflake(), "threadkeeper", bot=True)
        self.application_id: str = self.bot["id"]
        self.alice = p.user(p.snowflake(), "alice")
        self.bob = p.user(p.snowflake(), "bob")
        self.other_bot = p.user(p.snowflake(), "otherbot", bot=True)
        self.guild_id = p.snowflake()
        self._webhook_channels: dict[str, str] = {}
        self.channel_id = p.snowflake()
        self.bot_role_id = p.snowflake()
        self.channels: dict[str, JSON] = {self.channel_id: p.text_channel(self.channel_id, self.guild_id)}
        self.calls: list[Call] = []
        self.identifies: list[JSON] = []
        self.messages: dict[str, JSON] = {}
        """Messages the bot created (REST or webhook), by id, as last edited."""
        self.sent: dict[str, JSON] = {}
        """Messages people (and other bots) sent through the gateway, by id."""
        self.commands: dict[str | None, list[JSON]] = {}
        """Registered application commands: ``None`` = global, else per guild id."""
        self._sessions: list[_Session] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.cdn = DiscordCdn(lambda: self.url)
        """Attachments on a loopback CDN path of this server: see ``file_hosts.py``."""
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._register_routes()

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        return f"{self.url}/api/v10"

    async def start(self) -> str:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        app.router.add_get("/gateway", self._gateway)
        self.cdn.install(app.router)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        for session in list(self._sessions):
            await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # ---- reading what the bot did -------------------------------------------------------------
    def find(self, method: str, pattern: str) -> list[Call]:
        """Calls whose path matches ``pattern`` (a regex, matched in full)."""
        rx = re.compile(pattern)
        return [c for c in self.calls if c.method == method and rx.fullmatch(c.path)]

    def count(self, method: str, path_prefix: str) -> int:
        return sum(1 for c in self.calls if c.method == method and c.path.startswith(path_prefix))

    async def wait_for(self, check: Callable[[], T | None], within: float = 5.0) -> T:
        """Wait until ``check()`` is truthy (re-evaluated on every recorded call or gateway change)."""
        async with asyncio.timeout(within), self._changed:
            while not (result := check()):
                await self._changed.wait()
            return result

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ---- rate limits --------------------------------------------------------------------------
    def edit_limit(self, per_channel: int = 5, per_seconds: float = 5.0) -> None:
        """At most ``per_channel`` ``PATCH /channels/{id}/messages/{mid}`` per channel per ``per_seconds``."""
        self.limits.set("edit", per_channel, per_seconds)

    def post_limit(self, per_channel: int = 5, per_seconds: float = 5.0) -> None:
        """At most ``per_channel`` ``POST /channels/{id}/messages`` per channel per ``per_seconds``."""
        self.limits.set("post", per_channel, per_seconds)

    @property
    def refused(self) -> list[Refusal]:
        """Every 429: key (method, channel[, message id]), when, and the ``retry_after`` it answered."""
        return self.limits.watch.refused

    def early_retries(self) -> list[Call]:
        """Calls for the same method and channel (and message, for edits) that came before an earlier 429's
        ``retry_after`` had elapsed."""
        return list(self.limits.watch.early)

    def bot_messages(self, channel_id: str) -> list[JSON]:
        """The bot's non-ephemeral messages in a channel, oldest first, as last edited."""
        return [m for m in self.messages.values() if m["channel_id"] == channel_id]

    @property
    def connected(self) -> int:
        """How many gateway sessions have identified."""
        return sum(1 for s in self._sessions if s.identify is not None and not s.ws.closed)

    async def wait_identified(self, count: int = 1, within: float = 10.0) -> None:
        """Until ``count`` IDENTIFYs in all were answered with READY (and GUILD_CREATE)."""
        await self.wait_for(lambda: len(self.identifies) >= count, within)

    # ---- pushing gateway events ---------------------------------------------------------------
    async def dispatch(self, event: str, data: JSON) -> int:
        """Send a DISPATCH to the session that owns it (guild shard, DMs on shard 0); returns deliveries."""
        delivered = 0
        if event == "MESSAGE_CREATE" and "id" in data:
            self.sent[data["id"]] = data
        for session in self._sessions:
            if session.identify is None or session.ws.closed or not self._owns(session, data):
                continue
            session.seq += 1
            payload = self._withhold_content(session, data) if event == "MESSAGE_CREATE" else data
            await session.ws.send_json({"op": 0, "t": event, "s": session.seq, "d": payload})
            delivered += 1
        return delivered

    def _withhold_content(self, session: _Session | None, data: JSON) -> JSON:
        """Without the message-content intent, guild messages that don't mention the bot come blank."""
        intents = int(((session.identify if session else None) or {}).get("intents", 0))
        if intents & MESSAGE_CONTENT or "guild_id" not in data:
            return data
        referenced = data.get("referenced_message")
        if isinstance(referenced, dict):  # the replied-to message follows the same rule
            data = {**data, "referenced_message": self._withhold_content(session, {**referenced, "guild_id":
                                                                                   data["guild_id"]})}
        if data["author"]["id"] == self.bot["id"] or any(u["id"] == self.bot["id"] for u in data.get("mentions", [])):
            return data
        return {**data, "content": "", "embeds": [], "attachments": [], "components": []}

    @staticmethod
    def _owns(session: _Session, data: JSON) -> bool:
        if session.shard is None:
            return True
        shard_id, count = session.shard
        guild_id = data.get("guild_id")
        return (int(guild_id) >> 22) % count == shard_id if guild_id else shard_id == 0

    def dm_channel_for(self, someone: JSON) -> JSON:
        channel_id = f"{someone['id']}0"
        channel = self.channels.setdefault(channel_id, p.dm_channel(channel_id, someone))
        return channel

    async def send_dm(self, content: str, author: JSON | None = None) -> JSON:
        author = author or self.alice
        msg = p.message(self.dm_channel_for(author)["id"], author, content)
        await self.dispatch("MESSAGE_CREATE", msg)
        return msg

    async def send_guild(self, content: str, *, author: JSON | None = None, mention_bot: bool = False,
                         mention_role: bool = False, mention_everyone: bool = False,
                         channel_id: str | None = None, reply_to: JSON | None = None, ping: bool = True) -> JSON:
        """A guild message; a mention prefixes the content with ``<@bot>`` (or the bot's role).

        ``reply_to`` makes it a reply, sent with the replied-to message as Discord's gateway does; a reply
        pings that message's author unless ``ping`` is off (then, to the bot, it is no mention)."""
        author = author or self.alice
        mentions: list[JSON] = []
        roles: list[str] = []
        reference = None
        if reply_to is not None:
            reference = {"type": 0, "message_id": reply_to["id"], "channel_id": reply_to["channel_id"],
                         "guild_id": self.guild_id}
            if ping:
                mentions.append(reply_to["author"])
        if mention_bot:
            content = f"<@{self.bot['id']}> {content}"
            mentions.append(self.bot)
        if mention_role:
            content = f"<@&{self.bot_role_id}> {content}"
            roles.append(self.bot_role_id)
        msg = p.message(channel_id or self.channel_id, author, content, guild_id=self.guild_id,
                        mentions=mentions, mention_roles=roles, mention_everyone=mention_everyone,
                        reference=reference)
        if reply_to is not None:
            replied = self.messages.get(reply_to["id"]) or self.sent.get(reply_to["id"]) or reply_to
            # One level only, as on Discord: the replied-to message comes without the one it replied to.
            msg["referenced_message"] = {k: v for k, v in replied.items() if k != "referenced_message"}
        await self.dispatch("MESSAGE_CREATE", msg)
        return msg

    async def user_thread(self, name: str = "a thread", *, owner: JSON | None = None) -> str:
        """Someone opens a thread in the guild's channel (the bot sees THREAD_CREATE); returns its id."""
        thread_id = p.snowflake()
        thread = p.thread_channel(thread_id, self.guild_id, self.channel_id, (owner or self.alice)["id"], name)
        self.channels[thread_id] = thread
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return thread_id

    async def forward(self, text: str, *, author: JSON | None = None, to_dm: bool = True) -> JSON:
        """``author`` forwards a message whose text is ``text`` (Discord sends the copy without its author)."""
        author = author or self.alice
        channel_id = self.dm_channel_for(author)["id"] if to_dm else self.channel_id
        msg = p.message(channel_id, author, "", guild_id=None if to_dm else self.guild_id)
        msg["message_reference"] = {"type": 1, "channel_id": self.channel_id, "message_id": p.snowflake(),
                                    "guild_id": self.guild_id}
        msg["message_snapshots"] = [{"message": {"type": 0, "content": text, "embeds": [], "attachments": [],
                                                 "timestamp": p.now_iso(), "edited_timestamp": None, "flags": 0,
                                                 "mentions": [], "mention_roles": []}}]
        await self.dispatch("MESSAGE_CREATE", msg)
        return msg

    async def invoke(self, name: str, *, options: list[JSON] | None = None, author: JSON | None = None,
                     in_guild: bool = True, channel_id: str | None = None) -> JSON:
        """Run an application command the bot registered (looked up in the guild's set, then global)."""
        author = author or self.alice
        scope = [*self.commands.get(self.guild_id, []), *self.commands.get(None, [])] if in_guild \
            else self.commands.get(None, [])
        command = next((c for c in scope if c["name"] == name), None)
        if command is None:
            raise AssertionError(f"command {name!r} is not registered: {self.commands}")
        channel = self.channels[channel_id or self.channel_id] if in_guild else self.dm_channel_for(author)
        payload = p.interaction(self.application_id, command, author, channel,
                                guild_id=self.guild_id if in_guild else None, options=options)
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    # ---- gateway ------------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = _Session(ws)
        self._sessions.append(session)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}})
        try:
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    continue
                packet = json.loads(frame.data)
                if packet["op"] == 1:
                    await ws.send_json({"op": 11})
                elif packet["op"] == 2:
                    await self._identify(session, packet["d"])
                elif packet["op"] == 6:  # RESUME: not kept; ask for a fresh IDENTIFY
                    await ws.send_json({"op": 9, "d": False})
        finally:
            self._sessions.remove(session)
            await self._notify()
        return ws

    async def _identify(self, session: _Session, data: JSON) -> None:
        if data.get("token") != self.token:
            await session.ws.close(code=4004, message=b"Authentication failed.")
            return
        shard = data.get("shard")
        session.shard = (int(shard[0]), int(shard[1])) if shard else None
        owns_guild = self._owns(session, {"guild_id": self.guild_id})
        ready: JSON = {
            "v": 10,
            "user": self.bot,
            "guilds": [{"id": self.guild_id, "unavailable": True}] if owns_guild else [],
            "session_id": p.snowflake(),
            "resume_gateway_url": f"{self.url.replace('http', 'ws', 1)}/gateway",
            "application": {"id": self.application_id, "flags": 0},
        }
        if shard:
            ready["shard"] = shard
        session.seq += 1
        await session.ws.send_json({"op": 0, "t": "READY", "s": session.seq, "d": ready})
        if owns_guild:
            await self.dispatch_to(session, "GUILD_CREATE", self._guild())
        session.identify = data  # only now: events pushed by tests come after READY and GUILD_CREATE
        self.identifies.append(data)
        await self._notify()

    async def dispatch_to(self, session: _Session, event: str, data: JSON) -> None:
        session.seq += 1
        await session.ws.send_json({"op": 0, "t": event, "s": session.seq, "d": data})

    def _guild(self) -> JSON:
        channels = [c for c in self.channels.values() if c.get("guild_id") == self.guild_id
                    and c["type"] == p.CHANNEL_TEXT]
        bot_role = p.role(self.bot_role_id, "threadkeeper", bot_id=self.bot["id"])
        data = p.guild(self.guild_id, channels, [bot_role], self.alice["id"])
        data["members"] = [{**p.member(self.bot), "roles": [self.bot_role_id]}]
        return data

    # ---- REST ---------------------------------------------------------------------------------
    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        body: Any = None
        if request.can_read_body and request.content_type == "application/json":
            body = await request.json()
        call = Call(request.method, path, body, dict(request.query), at=self.clock())
        self.calls.append(call)
        await self._notify()
        public = path.startswith(("/webhooks/", "/interactions/"))
        if not public and request.headers.get("Authorization") != f"Bot {self.token}":
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        verdict = self.limits.check(request.method, path, call, call.at)
        if verdict is not None and verdict.refusal is not None:
            call.refused = True
            await self._notify()
            return _json(verdict.body(), status=429, headers=verdict.headers)
        for method, rx, handler in self._routes:
            match = rx.fullmatch(path)
            if match and method == request.method:
                result = handler(request, match, body)
                response = await result if inspect.isawaitable(result) else result
                if verdict is not None:
                    response.headers.update(verdict.headers)
                return response
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    def _route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(pattern), handler))

    def _register_routes(self) -> None:
        r = self._route
        r("GET", r"/gateway/bot", self._get_gateway_bot)
        r("GET", r"/gateway", self._get_gateway_bot)
        r("GET", r"/users/@me", lambda *_: _ok(self.bot))
        r("GET", r"/oauth2/applications/@me", lambda *_: _ok(self._app_info()))
        r("POST", r"/users/@me/channels", self._open_dm)
        r("GET", r"/channels/(\d+)", lambda _r, m, _b: self._get_channel(m[1]))
        r("POST", r"/channels/(\d+)/typing", lambda *_: _no_content())
        r("POST", r"/channels/(\d+)/messages", lambda _r, m, b: self._create_message(m[1], b))
        r("GET", r"/channels/(\d+)/messages/(\d+)", lambda _r, m, _b: self._get_message(m[1], m[2]))
        r("GET", r"/channels/(\d+)/messages", lambda req, m, _b: self._history(m[1], req.query))
        r("PATCH", r"/channels/(\d+)/messages/(\d+)", lambda _r, m, b: self._edit_message(m[2], b))
        r("DELETE", r"/channels/(\d+)/messages/(\d+)", lambda _r, m, _b: self._delete_message(m[2]))
        r("POST", r"/channels/(\d+)/messages/(\d+)/threads", lambda _r, m, b: self._open_thread(m[1], b, m[2]))
        r("POST", r"/channels/(\d+)/threads", lambda _r, m, b: self._open_thread(m[1], b))
        r("GET", r"/applications/(\d+)/commands", lambda *_: _ok(self.commands.get(None, [])))
        r("PUT", r"/applications/(\d+)/commands", lambda _r, _m, b: self._put_commands(None, b))
        r("GET", r"/applications/(\d+)/guilds/(\d+)/commands", lambda _r, m, _b: _ok(self.commands.get(m[2], [])))
        r("PUT", r"/applications/(\d+)/guilds/(\d+)/commands", lambda _r, m, b: self._put_commands(m[2], b))
        r("POST", r"/interactions/(\d+)/([^/]+)/callback", self._callback)
        r("POST", r"/webhooks/(\d+)/([^/]+)", lambda _r, m, b: self._create_message(self._webhook_channel(m[2]), b))
        r("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/([^/]+)",
          lambda _r, m, b: self._edit_message(self._original(m[2]) if m[3] == "@original" else m[3], b))

    async def _get_gateway_bot(self, request: web.Request, _m: re.Match[str], _b: Any) -> web.Response:
        return _ok({
            "url": f"{self.url.replace('http', 'ws', 1)}/gateway",
            "shards": self.recommended_shards,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 16},
        })

    def _app_info(self) -> JSON:
        return {
            "id": self.application_id, "name": "threadkeeper", "description": "", "icon": None,
            "bot_public": True, "bot_require_code_grant": False, "owner": self.alice,
            "verify_key": "0" * 64, "flags": 0, "team": None, "summary": "", "rpc_origins": [],
            "interactions_endpoint_url": None, "redirect_uris": [],
        }

    async def _open_dm(self, _r: web.Request, _m: re.Match[str], body: Any) -> web.Response:
        recipient = next(u for u in (self.alice, self.bob, self.other_bot) if u["id"] == body["recipient_id"])
        return _ok(self.dm_channel_for(recipient))

    async def _get_channel(self, channel_id: str) -> web.Response:
        if channel_id in self.channels:
            return _ok(self.channels[channel_id])
        return _json({"message": "Unknown Channel", "code": 10003}, status=404)

    async def _create_message(self, channel_id: str, body: Any) -> web.Response:
        body = body or {}
        channel = self.channels.get(channel_id, {})
        msg = p.message(channel_id, self.bot, body.get("content") or "", guild_id=channel.get("guild_id"),
                        reference=body.get("message_reference"))
        msg["flags"] = body.get("flags", 0)
        msg["allowed_mentions"] = body.get("allowed_mentions")
        self.messages[msg["id"]] = msg
        await self._notify()
        return _ok(msg)

    def _readable(self, data: JSON) -> JSON:
        """A message as the bot may read it over REST (content withheld without the intent, as on the gateway)."""
        session = next((s for s in self._sessions if s.identify is not None), None)
        return self._withhold_content(session, data)

    async def _get_message(self, channel_id: str, message_id: str) -> web.Response:
        msg = self.messages.get(message_id) or self.sent.get(message_id)
        if msg is None or msg["channel_id"] != channel_id:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        return _ok(self._readable(msg))

    async def _history(self, channel_id: str, query: Any) -> web.Response:
        """Newest first, like Discord: ``before``/``after`` bound the ids, ``limit`` the count."""
        found = [m for m in (*self.sent.values(), *self.messages.values()) if m["channel_id"] == channel_id]
        if query.get("before"):
            found = [m for m in found if int(m["id"]) < int(query["before"])]
        if query.get("after"):
            found = [m for m in found if int(m["id"]) > int(query["after"])]
        found.sort(key=lambda m: int(m["id"]), reverse=True)
        return _ok([self._readable(m) for m in found[: int(query.get("limit") or 50)]])

    def _webhook_channel(self, token: str) -> str:
        """Where an interaction's messages go: a channel id of their own per interaction token."""
        return self._webhook_channels.setdefault(token, p.snowflake())

    def _original(self, token: str) -> str:
        """An interaction's response (``@original``): one message per token, with a real id; its key."""
        key = f"original:{token}"
        if key not in self.messages:
            self.messages[key] = p.message(self._webhook_channel(token), self.bot, "", message_id=p.snowflake())
        return key

    async def _edit_message(self, message_id: str, body: Any) -> web.Response:
        msg = self.messages.get(message_id)
        if msg is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        if "content" in (body or {}):
            msg["content"] = body["content"]
        msg["edited_timestamp"] = p.now_iso()
        await self._notify()
        return _ok(msg)

    async def _delete_message(self, message_id: str) -> web.Response:
        self.messages.pop(message_id, None)
        return _no_content()

    async def _open_thread(self, parent_id: str, body: Any, thread_id: str | None = None) -> web.Response:
        """A thread started from a message takes that message's id, as on Discord."""
        thread_id = thread_id or p.snowflake()
        thread = p.thread_channel(thread_id, self.guild_id, parent_id, self.bot["id"], body.get("name", "thread"))
        self.channels[thread_id] = thread
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return _ok(thread)

    async def _put_commands(self, scope: str | None, body: Any) -> web.Response:
        registered = []
        for command in body:
            item = {**command, "id": p.snowflake(), "application_id": self.application_id, "version": "1"}
            if scope is not None:
                item["guild_id"] = scope
            registered.append(item)
        self.commands[scope] = registered
        return _ok(registered)

    async def _callback(self, _r: web.Request, m: re.Match[str], body: Any) -> web.Response:
        data = (body or {}).get("data") or {}
        return _ok({
            "interaction": {
                "id": m[1], "type": 2, "response_message_loading": body.get("type") == 5,
                "response_message_ephemeral": bool(data.get("flags", 0) & 64),
            },
        })


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """discord.py only parses bodies whose Content-Type is exactly ``application/json`` (no charset)."""
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={**(headers or {}), "Content-Type": "application/json"})


def _ok(data: Any) -> web.Response:
    return _json(data)


def _no_content() -> web.Response:
    return web.Response(status=204)
