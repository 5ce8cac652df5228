"""The Discord adapter (discord.py 2.x): DMs, mentions, listed channels, ``/forget``, streamed answers.

It parses gateway events (:mod:`adapters.discord.parse`), hands them to the core through the kit's
:func:`~adapters.kit.reply.deliver` and renders what comes back (:mod:`adapters.discord.reply`); it never
touches Redis or OpenAI (only the core's flags, for the command-set hash: :mod:`adapters.discord.commands`, and
whether the bot was called into a thread, for follow-ups there). What a message brings along (the reply chain,
recent channel messages) is read when the core answers it (:mod:`adapters.discord.context`).
discord.py runs every event handler as a task of its own; the adapter counts the ones answering a message
(:class:`~adapters.kit.tasks.InFlight`) so shutdown can let them finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time

import discord
import discord.http
import yarl
from discord.gateway import DiscordWebSocket

from adapters.discord.approvals import DiscordApprovals, channel_prompter
from adapters.discord.commands import build_tree, sync_commands
from adapters.discord.context import DiscordContext, is_reply
from adapters.discord.feedback import DiscordFeedback, FeedbackReply
from adapters.discord.files import discord_fetcher, file_refs
from adapters.discord.limits import ChannelEdits
from adapters.discord.parse import Parsed, parse_message, thread_name
from adapters.discord.setup import content_needed_by, make_client, rest_base
from adapters.kit.files import deliver_with_files
from adapters.kit.tasks import InFlight, event_loop_name, run_until_stopped
from bot.config import ConfigError, Settings
from bot.core import Core
from bot.metrics import Metrics
from bot.runtime import Runtime

log = logging.getLogger("threadkeeper.discord")


class DiscordAdapter:
    """Owns the discord.py client: :meth:`start` logs in, syncs commands and connects; :meth:`close`."""

    def __init__(self, core: Core, settings: Settings, *, edit_interval: float = 1.0,
                 metrics: Metrics | None = None, edits: ChannelEdits | None = None) -> None:
        self.core = core
        self.settings = settings
        self.edit_interval = edit_interval
        self.client = make_client(settings)
        self.edits = edits or ChannelEdits(metrics=metrics, server_of=self._server_of)
        self.files = discord_fetcher(settings)
        """Downloads the attachments of a message (:mod:`adapters.discord.files`)."""
        """Every channel's edit budget, shared by all answers in it (and Discord's 429s, counted)."""
        self.client.event(self.on_message)
        self.client.event(self.on_ready)
        self.feedback = DiscordFeedback(core)
        self.approvals = DiscordApprovals(core)
        self.client.event(self.on_interaction)  # clicks on the feedback buttons and on approval prompts
        self.tree = build_tree(self.client, core)
        self.connection: asyncio.Task[None] | None = None
        self.in_flight = InFlight(log)
        """The ``on_message`` handlers answering right now."""
        self._saved: tuple[str, yarl.URL] | None = None

    async def start(self) -> None:
        """Log in, sync ``/forget`` when needed, and connect the gateway in the background."""
        if self.settings.discord_api_base:
            self._saved = (discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
            discord.http.Route.BASE = rest_base(self.settings.discord_api_base)
        token = self.settings.discord_token.get_secret_value() if self.settings.discord_token else ""
        self.edits.watch()
        try:
            await self.client.login(token)
        except discord.LoginFailure:
            await self.close()
            raise ConfigError("DISCORD_TOKEN: Discord rejected the token") from None
        if self._saved is not None:
            # discord.py connects to its built-in gateway URL unless told otherwise: ask the REST base.
            try:
                _, gateway, _ = await self.client.http.get_bot_gateway()
                DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
            except discord.GatewayNotFound:
                log.warning("DISCORD_API_BASE gave no gateway URL; using Discord's default gateway")
        app_id = self.client.application_id or ""
        await sync_commands(self.tree, self.core, app_id, self.settings.discord_dev_guild)
        self.connection = asyncio.create_task(self.client.connect(reconnect=True), name="discord-gateway")

    async def disconnected(self) -> None:
        """Until the gateway connection ends for good; a refused privileged intent is a :class:`ConfigError`."""
        if self.connection is None:
            return
        await asyncio.wait({self.connection})  # never cancels the connection itself
        if self.connection.cancelled():
            return
        exc = self.connection.exception()
        if isinstance(exc, discord.PrivilegedIntentsRequired):
            needs = content_needed_by(self.settings)
            raise ConfigError(
                f"{' and '.join(needs)} need{'s' if len(needs) == 1 else ''} the Message Content intent: enable it "
                f"for the bot in the Discord developer portal, or unset {' and '.join(needs)}"
            ) from None
        if exc is not None:
            raise exc

    async def drain(self, grace: float) -> None:
        """Finish answers in flight within ``grace`` in all: the core first, then our final edits, which
        may still wait their turn in a busy channel's edit budget."""
        deadline = time.monotonic() + grace
        await self.core.drain(grace)
        await self.in_flight.wait(max(1.0, deadline - time.monotonic()))

    async def close(self) -> None:
        self.edits.unwatch()
        await self.client.close()
        if self.connection is not None:
            with contextlib.suppress(asyncio.CancelledError, discord.DiscordException, OSError):
                await self.connection
        if self._saved is not None:
            discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = self._saved
            self._saved = None

    async def on_ready(self) -> None:
        user = self.client.user
        log.info("connected to Discord as %s (%s) in %d server(s), %s loop", user, user.id if user else "?",
                 len(self.client.guilds), event_loop_name())

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Component clicks: feedback under answers, Approve / Decline on tool calls (each ignores the other's)."""
        await self.feedback.on_interaction(interaction)
        await self.approvals.on_interaction(interaction)

    # -- messages ------------------------------------------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        me = self.client.user
        if me is None:
            return
        parsed = parse_message(
            message, me, channels=self.settings.discord_channels, open_threads=self.settings.discord_open_threads
        )
        if parsed is None:
            return
        if parsed.follow_up and not await self.core.shared.joined(parsed.incoming.place):
            return  # a thread the bot was never called into
        with self.in_flight.track():
            await self._answer(message, parsed, me)

    async def _answer(self, message: discord.Message, parsed: Parsed, me: discord.ClientUser) -> None:
        channel = message.channel
        incoming = parsed.incoming
        talk = parsed.channel_talk and self.settings.discord_channel_context > 0
        if is_reply(message) or talk:
            reader = DiscordContext(me, channel_limit=self.settings.discord_channel_context)
            incoming = dataclasses.replace(incoming, gather=reader.gather_for(message, channel_talk=talk))

        async def destination() -> discord.abc.Messageable:
            return await self._open_thread(message, parsed.incoming.text) if parsed.open_thread else channel

        reply = FeedbackReply(channel, destination=destination, reference=message if parsed.reply else None,
                             interval=self.edit_interval, edits=self.edits, digest=parsed.incoming.key.digest)
        incoming = dataclasses.replace(incoming, ask=channel_prompter(reply.target))
        try:
            await deliver_with_files(self.core, incoming, file_refs(message), self.files.fetch, reply, log)
        except discord.HTTPException as exc:
            log.error("could not deliver the answer for %s: %s", parsed.incoming.key.digest, exc)

    def _server_of(self, channel_id: int) -> str | None:
        """The server a channel belongs to (for the once-a-minute warning), if discord.py knows it."""
        guild = getattr(self.client.get_channel(channel_id), "guild", None)
        return f"server {guild.id}" if guild is not None else None

    async def _open_thread(self, message: discord.Message, text: str) -> discord.abc.Messageable:
        try:
            return await message.create_thread(name=thread_name(text, message.author.display_name))
        except discord.HTTPException as exc:
            log.warning("could not open a thread, answering in the channel: %s", exc)
            return message.channel


async def run(runtime: Runtime, *, stop: asyncio.Event | None = None) -> None:
    """``python -m bot discord``: run until SIGTERM/SIGINT (or ``stop``), drain, disconnect cleanly."""
    adapter = DiscordAdapter(runtime.core, runtime.settings, metrics=runtime.metrics)
    grace = runtime.settings.shutdown_grace

    async def drain() -> None:
        log.info("stopping: finishing answers in flight")
        await adapter.drain(grace)

    await run_until_stopped(adapter.start, drain, adapter.close, stop=stop, until=adapter.disconnected)
