"""Discord API object builders for the loopback fake (users, guilds, channels, messages, interactions).

Only the fields discord.py reads are filled in; the shapes follow Discord's API v10 documentation.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]

DISCORD_EPOCH_MS = 1420070400000
_counter = itertools.count(1)

CHANNEL_TEXT = 0
CHANNEL_DM = 1
CHANNEL_PUBLIC_THREAD = 11


def snowflake() -> str:
    """A fresh, increasing snowflake (timestamp bits + a process-wide counter)."""
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return str((ms << 22) | (next(_counter) & 0x3FFFFF))


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def user(user_id: str, name: str, *, bot: bool = False) -> JSON:
    return {
        "id": user_id,
        "username": name,
        "global_name": name,
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


def text_channel(channel_id: str, guild_id: str, name: str = "general") -> JSON:
    return {
        "id": channel_id,
        "type": CHANNEL_TEXT,
        "guild_id": guild_id,
        "name": name,
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
    }


def thread_channel(thread_id: str, guild_id: str, parent_id: str, owner_id: str, name: str) -> JSON:
    return {
        "id": thread_id,
        "type": CHANNEL_PUBLIC_THREAD,
        "guild_id": guild_id,
        "parent_id": parent_id,
        "owner_id": owner_id,
        "name": name,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": now_iso(),
            "locked": False,
        },
    }


def dm_channel(channel_id: str, recipient: JSON) -> JSON:
    return {"id": channel_id, "type": CHANNEL_DM, "recipients": [recipient], "last_message_id": None}


def role(role_id: str, name: str, *, bot_id: str | None = None) -> JSON:
    data: JSON = {
        "id": role_id,
        "name": name,
        "color": 0,
        "hoist": False,
        "position": 0,
        "permissions": "0",
        "managed": bot_id is not None,
        "mentionable": True,
        "flags": 0,
    }
    if bot_id is not None:
        data["tags"] = {"bot_id": bot_id}
    return data


def guild(guild_id: str, channels: list[JSON], roles: list[JSON], owner_id: str) -> JSON:
    return {
        "id": guild_id,
        "name": f"guild {guild_id}",
        "icon": None,
        "owner_id": owner_id,
        "unavailable": False,
        "member_count": 2,
        "large": False,
        "features": [],
        "roles": [role(guild_id, "@everyone"), *roles],
        "emojis": [],
        "stickers": [],
        "channels": channels,
        "threads": [],
        "members": [],
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "joined_at": now_iso(),
        "premium_tier": 0,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "preferred_locale": "en-US",
        "system_channel_flags": 0,
    }


def member(author: JSON) -> JSON:
    return {"user": author, "roles": [], "joined_at": now_iso(), "deaf": False, "mute": False, "flags": 0}


def message(
    channel_id: str,
    author: JSON,
    content: str,
    *,
    guild_id: str | None = None,
    message_id: str | None = None,
    mentions: list[JSON] | None = None,
    mention_roles: list[str] | None = None,
    mention_everyone: bool = False,
    reference: JSON | None = None,
) -> JSON:
    data: JSON = {
        "id": message_id or snowflake(),
        "channel_id": channel_id,
        "author": author,
        "content": content,
        "timestamp": now_iso(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": mention_everyone,
        "mentions": mentions or [],
        "mention_roles": mention_roles or [],
        "attachments": [],
        "embeds": [],
        "components": [],
        "pinned": False,
        "type": 19 if reference else 0,
        "flags": 0,
    }
    if guild_id is not None:
        data["guild_id"] = guild_id
        data["member"] = {k: v for k, v in member(author).items() if k != "user"}
    if reference:
        data["message_reference"] = reference
    return data


def interaction(
    application_id: str,
    command: JSON,
    invoker: JSON,
    channel: JSON,
    *,
    guild_id: str | None = None,
    options: list[JSON] | None = None,
) -> JSON:
    """An INTERACTION_CREATE payload for a chat-input command."""
    data: JSON = {"id": command.get("id", snowflake()), "name": command["name"], "type": 1}
    if options:
        data["options"] = options
    if guild_id is not None and command.get("guild_id"):
        data["guild_id"] = guild_id
    payload: JSON = {
        "id": snowflake(),
        "application_id": application_id,
        "type": 2,
        "data": data,
        "channel_id": channel["id"],
        "channel": channel,
        "token": f"itok-{snowflake()}",
        "version": 1,
        "app_permissions": "0",
        "locale": "en-US",
        "attachment_size_limit": 8388608,
        "entitlements": [],
        "authorizing_integration_owners": {"0": guild_id or invoker["id"]},
        "context": 0 if guild_id else 1,
    }
    if guild_id is not None:
        payload["guild_id"] = guild_id
        payload["guild_locale"] = "en-US"
        payload["member"] = {**member(invoker), "permissions": "0"}
    else:
        payload["user"] = invoker
    return payload
