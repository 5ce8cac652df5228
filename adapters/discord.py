"""The Discord adapter (discord.py 2.x): DMs, mentions, listed channels, ``/forget``, streamed answers.

It parses gateway events into :class:`~bot.types.Incoming`, hands them to the core and renders what comes
back (:mod:`adapters.discord_reply`); it never touches Redis or OpenAI itself (only the core's two flag
methods, for the command-set hash). Intents are minimal: guilds, guild messages and DM messages. Discord
still sends the content of DMs and of messages that mention the bot without the privileged
message-content intent; that intent is requested only when ``DISCORD_CHANNELS`` asks the bot to answer
every message in some channels (enable it in the developer portal then).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import re

import discord
import discord.http
import yarl
from discord.gateway import DiscordWebSocket

from adapters.discord_commands import build_tree, sync_commands
from adapters.discord_reply import ReplyStream
from bot.config import ConfigError, Settings
from bot.core import Core
from bot.runtime import Runtime
from bot.service import stop_on_signals
from bot.text import strip_mentions
from bot.types import ForgetResult, Incoming, ThreadKey, user_sentence

log = logging.getLogger("threadkeeper.discord")

PLATFORM = "discord"
DEFAULT_API_VERSION = 10
THREAD_NAME_LIMIT = 90
_API_PATH = re.compile(r"/api/v\d+/?$")


# -- invite URL and settings helpers -----------------------------------------------------------------
def permissions(*, open_threads: bool = False) -> discord.Permissions:
    """Exactly what the adapter uses: read and answer messages (and threads), reply to them, open threads."""
    return discord.Permissions(
        view_channel=True,
        send_messages=True,
        send_messages_in_threads=True,
        read_message_history=True,  # replying to a message needs it
        create_public_threads=open_threads,
    )


def invite_url(application_id: str, *, open_threads: bool = False) -> str:
    """The OAuth2 URL that adds the bot with its permissions and the ``/forget`` command."""
    return discord.utils.oauth_url(
        application_id,
        permissions=permissions(open_threads=open_threads),
        scopes=("bot", "applications.commands"),
    )


def application_id_from_token(token: str) -> str:
    """A bot token's first segment is its user id (base64), which is the application id for bots."""
    head = token.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    if not decoded.isdigit():
        raise ConfigError("DISCORD_TOKEN: does not look like a bot token (cannot read the application id)")
    return decoded


def print_invite_url(settings: Settings) -> int:
    """``python -m bot discord --invite-url``: print the URL and exit."""
    settings.require("discord_token")
    assert settings.discord_token is not None
    app_id = application_id_from_token(settings.discord_token.get_secret_value())
    print(invite_url(app_id, open_threads=settings.discord_open_threads))
    return 0


def rest_base(value: str) -> str:
    """``DISCORD_API_BASE`` -> discord.py's REST base; a bare host (a REST proxy) gets ``/api/v10``."""
    base = value.rstrip("/")
    return base if _API_PATH.search(base) else f"{base}/api/v{DEFAULT_API_VERSION}"


def intents(settings: Settings) -> discord.Intents:
    chosen = discord.Intents.none()
    chosen.guilds = True
    chosen.guild_messages = True
    chosen.dm_messages = True
    chosen.message_content = bool(settings.discord_channels)
    return chosen


def make_client(settings: Settings) -> discord.Client:
    """A plain client, or an auto-sharded one with ``DISCORD_SHARD_COUNT`` (and ``DISCORD_SHARD_IDS``)."""
    chosen = intents(settings)
    mentions = discord.AllowedMentions.none()
    no_members = discord.MemberCacheFlags.none()
    if count := settings.discord_shard_count:
        return discord.AutoShardedClient(
            shard_count=count, shard_ids=settings.shard_ids or list(range(count)), intents=chosen,
            allowed_mentions=mentions, chunk_guilds_at_startup=False, member_cache_flags=no_members,
            max_messages=None,
        )
    return discord.Client(intents=chosen, allowed_mentions=mentions, chunk_guilds_at_startup=False,
                          member_cache_flags=no_members, max_messages=None)


def thread_key(channel: discord.abc.Messageable | discord.interactions.InteractionChannel | None,
               channel_id: int, guild_id: int | None, user_id: int) -> ThreadKey:
    """guild + channel + user; DMs: ``dm`` + channel + user; a Discord thread: ``parent/thread``."""
    if guild_id is None:
        return ThreadKey(PLATFORM, "dm", str(channel_id), str(user_id))
    where = str(channel_id)
    if isinstance(channel, discord.Thread) and channel.parent_id:
        where = f"{channel.parent_id}/{channel_id}"
    return ThreadKey(PLATFORM, str(guild_id), where, str(user_id))


def describe_forget(result: ForgetResult, everything: bool) -> str:
    if result.threads == 0:
        text = "There was nothing to forget."
    elif everything:
        text = f"Done: I've forgotten {result.threads} conversation{'s' if result.threads != 1 else ''}."
    else:
        text = "Done: I've forgotten our conversation here. Your next message starts fresh."
    if result.remote_pending:
        text += " Removing the copy on the assistant's side will finish shortly."
    return text


# -- the adapter -------------------------------------------------------------------------------------
class DiscordAdapter:
    """Owns the discord.py client: :meth:`start` logs in, syncs commands and connects; :meth:`close`."""

    def __init__(self, core: Core, settings: Settings, *, edit_interval: float = 1.0) -> None:
        self.core = core
        self.settings = settings
        self.edit_interval = edit_interval
        self.client = make_client(settings)
        self.client.event(self.on_message)
        self.client.event(self.on_ready)
        self.tree = build_tree(self.client, self.forget)
        self.connection: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[object]] = set()
        self._saved: tuple[str, yarl.URL] | None = None

    async def start(self) -> None:
        """Log in, sync ``/forget`` when needed, and connect the gateway in the background."""
        if self.settings.discord_api_base:
            self._saved = (discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
            discord.http.Route.BASE = rest_base(self.settings.discord_api_base)
        token = self.settings.discord_token.get_secret_value() if self.settings.discord_token else ""
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
        await sync_commands(self.tree, self.core.store, app_id, self.settings.discord_dev_guild)
        self.connection = asyncio.create_task(self.client.connect(reconnect=True), name="discord-gateway")

    async def drain(self, grace: float) -> None:
        """Finish answers in flight (bounded): the core first, then our final edits."""
        await self.core.drain(grace)
        pending = {t for t in self._handlers if t is not asyncio.current_task()}
        if pending:
            await asyncio.wait(pending, timeout=max(1.0, grace / 5))

    async def close(self) -> None:
        await self.client.close()
        if self.connection is not None:
            with contextlib.suppress(asyncio.CancelledError, discord.DiscordException, OSError):
                await self.connection
        if self._saved is not None:
            discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = self._saved
            self._saved = None

    async def on_ready(self) -> None:
        user = self.client.user
        log.info("connected to Discord as %s (%s) in %d server(s)", user, user.id if user else "?",
                 len(self.client.guilds))

    # -- messages ------------------------------------------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        me = self.client.user
        if me is None or message.author.bot or message.author.id == me.id:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await self._answer(message, me)
        finally:
            if task is not None:
                self._handlers.discard(task)

    def _guild_id(self, message: discord.Message) -> int | None:
        if message.guild is not None:
            return message.guild.id
        return getattr(message.channel, "guild_id", None)

    def _mentions_me(self, message: discord.Message, me: discord.ClientUser) -> tuple[bool, list[str]]:
        """Whether the bot (or its managed role) is mentioned, and the mention tokens to strip."""
        tokens = [f"<@{me.id}>", f"<@!{me.id}>"]
        mentioned = any(u.id == me.id for u in message.mentions)
        role = message.guild.self_role if message.guild is not None else None
        if role is not None:
            tokens.append(f"<@&{role.id}>")
            mentioned = mentioned or role.id in message.raw_role_mentions
        return mentioned, tokens

    async def _answer(self, message: discord.Message, me: discord.ClientUser) -> None:
        guild_id = self._guild_id(message)
        mentioned, tokens = self._mentions_me(message, me)
        channel = message.channel
        parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
        listed = str(parent_id or channel.id) in self.settings.discord_channels
        # Threads the bot opened continue without a mention (their content needs the content intent).
        own_thread = isinstance(channel, discord.Thread) and channel.owner_id == me.id
        if guild_id is not None and not (mentioned or listed or own_thread):
            return
        key = thread_key(channel, channel.id, guild_id, message.author.id)
        open_thread = (
            guild_id is not None and self.settings.discord_open_threads and isinstance(channel, discord.TextChannel)
        )
        if open_thread:
            # A thread started from a message takes the message's id: the key is known before it exists.
            key = ThreadKey(PLATFORM, str(guild_id), f"{channel.id}/{message.id}", str(message.author.id))
        text = self._readable(strip_mentions(message.content, tokens), message, me)
        if not text.strip():
            return  # a bare mention, or content withheld without the message-content intent
        incoming = Incoming(key, text, str(message.id), reply_to=str(message.id),
                            direct=guild_id is None or mentioned)

        async def destination() -> discord.abc.Messageable:
            return await self._open_thread(message, text) if open_thread else channel

        reply_to = message if guild_id is not None and not open_thread else None
        stream = ReplyStream(channel, destination=destination, reference=reply_to, interval=self.edit_interval)
        try:
            async with stream:
                try:
                    answer = await self.core.handle(incoming, stream.on_delta)
                except Exception as exc:
                    await stream.fail(user_sentence(exc, log, f"answering {key.digest}"))
                    return
                if answer is not None:
                    await stream.finish(answer.text)
        except discord.HTTPException as exc:
            log.error("could not deliver the answer for %s: %s", key.digest, exc)

    @staticmethod
    def _readable(text: str, message: discord.Message, me: discord.ClientUser) -> str:
        """Other users' and roles' mention tokens become ``@name``: the model reads names, not ids."""
        for user in message.mentions:
            if user.id != me.id:
                name = f"@{user.display_name}"
                text = text.replace(f"<@{user.id}>", name).replace(f"<@!{user.id}>", name)
        for role in message.role_mentions:
            text = text.replace(f"<@&{role.id}>", f"@{role.name}")
        return text

    async def _open_thread(self, message: discord.Message, text: str) -> discord.abc.Messageable:
        name = " ".join(text.split())[:THREAD_NAME_LIMIT] or f"Chat with {message.author.display_name}"
        try:
            return await message.create_thread(name=name)
        except discord.HTTPException as exc:
            log.warning("could not open a thread, answering in the channel: %s", exc)
            return message.channel

    # -- /forget -------------------------------------------------------------------------------------
    async def forget(self, interaction: discord.Interaction, everything: bool) -> None:
        """Defer at once (ephemeral: only the asker sees it), forget, then answer with a followup."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = interaction.guild_id
        user_id = interaction.user.id
        try:
            if everything:
                result = await self.core.forget_user(PLATFORM, str(guild_id) if guild_id else "dm", str(user_id))
            else:
                channel_id = interaction.channel_id or 0
                result = await self.core.forget_channel(thread_key(interaction.channel, channel_id, guild_id, user_id))
            text = describe_forget(result, everything)
        except Exception as exc:
            text = user_sentence(exc, log, "/forget")
        try:
            await interaction.followup.send(text, ephemeral=True)
        except discord.HTTPException as exc:
            log.error("could not answer /forget: %s", exc)


async def run(runtime: Runtime, *, stop: asyncio.Event | None = None) -> None:
    """``python -m bot discord``: run until SIGTERM/SIGINT (or ``stop``), drain, disconnect cleanly."""
    stop = stop or asyncio.Event()
    adapter = DiscordAdapter(runtime.core, runtime.settings)
    with stop_on_signals(stop):
        try:
            await adapter.start()
            assert adapter.connection is not None
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({stopping, adapter.connection}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if adapter.connection.done() and not stop.is_set():
                _raise_connection_error(adapter.connection)
            log.info("stopping: finishing answers in flight")
            await adapter.drain(runtime.settings.shutdown_grace)
        finally:
            await adapter.close()


def _raise_connection_error(connection: asyncio.Task[None]) -> None:
    exc = connection.exception()
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        raise ConfigError(
            "DISCORD_CHANNELS needs the Message Content intent: enable it for the bot in the "
            "Discord developer portal, or unset DISCORD_CHANNELS"
        ) from None
    if exc is not None:
        raise exc
