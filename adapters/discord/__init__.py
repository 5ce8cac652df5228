"""The Discord adapter: :mod:`~adapters.discord.client` (the client, its events, :func:`run`),
:mod:`~adapters.discord.parse` (messages -> :class:`~bot.domain.Incoming`), :mod:`~adapters.discord.reply`
(streaming an answer into messages), :mod:`~adapters.discord.commands` (``/forget`` and its sync) and
:mod:`~adapters.discord.setup` (invite URL, intents, REST base).
"""

from adapters.discord.client import DiscordAdapter, run
from adapters.discord.setup import (
    application_id_from_token,
    intents,
    invite_url,
    permissions,
    print_invite_url,
    rest_base,
)

__all__ = [
    "DiscordAdapter",
    "application_id_from_token",
    "intents",
    "invite_url",
    "permissions",
    "print_invite_url",
    "rest_base",
    "run",
]
