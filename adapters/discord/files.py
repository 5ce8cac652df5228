"""Files shared with a Discord message: its attachments, and those of the messages it forwards.

Attachments are downloaded from their ``url`` without any token, and only from Discord's CDN hosts or
``DISCORD_API_BASE``'s host (a REST proxy, the tests' fake); see :class:`~adapters.kit.files.FileFetcher`.
"""

from __future__ import annotations

import discord

from adapters.kit.files import FileFetcher, FileRef, Hosts
from bot.config import Settings

DISCORD_FILE_HOSTS: tuple[str, ...] = ("cdn.discordapp.com", "media.discordapp.net")


def attachments_of(message: discord.Message) -> list[discord.Attachment]:
    """The message's attachments, then those of forwarded messages (``message_snapshots``)."""
    found = list(message.attachments)
    for snapshot in getattr(message, "message_snapshots", None) or ():
        found += list(getattr(snapshot, "attachments", None) or ())
    return found


def file_refs(message: discord.Message) -> tuple[FileRef, ...]:
    return tuple(FileRef(a.filename, a.url, a.size) for a in attachments_of(message))


def discord_fetcher(settings: Settings) -> FileFetcher:
    hosts = Hosts.https(DISCORD_FILE_HOSTS, settings.discord_api_base, token=False)
    return FileFetcher(hosts, max_bytes=settings.max_file_bytes, max_files=settings.max_files_per_message,
                       platform="Discord")
