"""The application commands (``/forget``; ``/ask``: :mod:`adapters.discord.ask`), and a sync that does not hammer
Discord. Both are installable to servers and to users, and run in servers, the bot's DMs and private channels.

Global commands can take up to an hour to propagate and syncing is rate limited, so the global set is
pushed only when its hash differs from the one stored after the last successful sync (a core flag per
application). ``DISCORD_DEV_GUILD`` syncs to one guild instead, which is instant: for development.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import discord
from discord import app_commands

from adapters.discord.ask import ask_command, interaction_key
from adapters.discord.parse import PLATFORM
from adapters.kit.texts import DISCORD_FORGET, forget_text, memory_text, user_sentence
from bot.core import Core
from bot.errors import Unavailable

log = logging.getLogger("threadkeeper.discord")

SyncOutcome = Literal["guild", "global", "unchanged", "failed"]


class Flags(Protocol):
    """Where the last synced command hash is kept (the core's flags)."""

    async def get_flag(self, name: str) -> str | None: ...

    async def set_flag(self, name: str, value: str) -> None: ...


def build_tree(client: discord.Client, core: Core) -> app_commands.CommandTree[discord.Client]:
    """The bot's command tree: ``/forget [all]``, ``/memory`` and ``/ask prompt``, wherever the app is installed."""
    tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)

    @app_commands.command(name="forget", description="Forget our conversation here, so the next message starts fresh")
    @app_commands.describe(everything="Forget all your conversations with me in this server (or all DMs)")
    @app_commands.rename(everything="all")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    async def forget(interaction: discord.Interaction, everything: bool = False) -> None:
        await answer_forget(core, interaction, everything)

    tree.add_command(forget)

    @app_commands.command(name="memory", description="What I remember of our conversation here (only you see it)")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    async def memory(interaction: discord.Interaction) -> None:
        await answer_memory(core, interaction)

    tree.add_command(memory)
    tree.add_command(ask_command(core))

    @tree.error
    async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        log.error("app command failed: %s", error, exc_info=error)

    return tree


async def answer_privately(interaction: discord.Interaction, command: str, work: Callable[[], Awaitable[str]]) -> None:
    """Defer at once (ephemeral: only the asker sees it), do the work, then answer with a followup."""
    await interaction.response.defer(ephemeral=True, thinking=True)
    try:
        text = await work()
    except Exception as exc:
        text = user_sentence(exc, log, command)
    try:
        await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException as exc:
        log.error("could not answer %s: %s", command, exc)


async def answer_forget(core: Core, interaction: discord.Interaction, everything: bool) -> None:
    """``/forget [all]``; where the app is a user install, the user's own conversation."""

    async def forget() -> str:
        key = interaction_key(interaction)
        if everything:
            result = await core.forget_user(PLATFORM, key.workspace, key.user)
        else:
            result = await core.forget_channel(key)
        return forget_text(DISCORD_FORGET, result, everything=everything)

    await answer_privately(interaction, "/forget", forget)


async def answer_memory(core: Core, interaction: discord.Interaction) -> None:
    """``/memory``: what is remembered of the conversation here."""

    async def remembered() -> str:
        return memory_text(*await core.memory_of(interaction_key(interaction)))

    await answer_privately(interaction, "/memory", remembered)


def command_hash(tree: app_commands.CommandTree[discord.Client]) -> str:
    """A stable digest of the global command set as Discord would receive it."""
    payload = sorted((c.to_dict(tree) for c in tree.get_commands()), key=lambda c: str(c.get("name")))
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def flag_name(application_id: int | str) -> str:
    return f"discord:commands:{application_id}"


async def sync_commands(
    tree: app_commands.CommandTree[discord.Client],
    flags: Flags,
    application_id: int | str,
    dev_guild: str | None,
) -> SyncOutcome:
    """Guild sync when ``dev_guild`` is set (every start, instant); else global sync only on change."""
    try:
        if dev_guild:
            guild = discord.Object(id=int(dev_guild))
            tree.copy_global_to(guild=guild)
            await tree.sync(guild=guild)
            log.info("synced application commands to dev guild %s", dev_guild)
            return "guild"
        digest = command_hash(tree)
        if await flags.get_flag(flag_name(application_id)) == digest:
            log.info("application commands unchanged; not syncing")
            return "unchanged"
        await tree.sync()
        await flags.set_flag(flag_name(application_id), digest)
        log.info("synced global application commands (they may take a while to show everywhere)")
        return "global"
    except (discord.HTTPException, Unavailable) as exc:
        log.error("application command sync failed (the bot still answers messages): %s", exc)
        return "failed"
