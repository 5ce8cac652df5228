"""Setting the Discord bot up: its invite URL and permissions, gateway intents, REST base, the client.

Intents are minimal: guilds, guild messages and DM messages. Discord still sends the content of DMs and
of messages that mention the bot (a reply that pings it included) without the privileged message-content
intent; that intent is requested only when ``DISCORD_CHANNELS`` asks the bot to answer every message in some
channels, or ``DISCORD_CHANNEL_CONTEXT`` to read the channel around a mention (enable it in the developer
portal then). Without it, follow-ups in threads and replies that do not ping the bot arrive empty, and are
left alone.
"""

from __future__ import annotations

import base64
import binascii
import re

import discord

from bot.config import ConfigError, Settings

DEFAULT_API_VERSION = 10
_API_PATH = re.compile(r"/api/v\d+/?$")


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


def invite_urls(application_id: str, *, open_threads: bool = False) -> tuple[str, str]:
    """Two links: add the bot to a server (``integration_type=0``), and add the app to one's own account
    (``integration_type=1``: ``/ask`` and ``/forget`` wherever its user is, no bot, no permissions)."""
    user = discord.utils.oauth_url(application_id, scopes=("applications.commands",))
    return (invite_url(application_id, open_threads=open_threads) + "&integration_type=0",
            user + "&integration_type=1")


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
    server, user = invite_urls(app_id, open_threads=settings.discord_open_threads)
    print(server)  # add the bot to a server
    print(user)  # install the app for yourself: /ask and /forget in any server or DM
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
    chosen.message_content = bool(content_needed_by(settings))
    return chosen


def content_needed_by(settings: Settings) -> list[str]:
    """The settings that need the message-content intent (none: the bot does without it)."""
    needs = [("DISCORD_CHANNELS", bool(settings.discord_channels)),
             ("DISCORD_CHANNEL_CONTEXT", settings.discord_channel_context > 0)]
    return [name for name, on in needs if on]


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
