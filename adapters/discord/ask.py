"""``/ask prompt:<text>``: an answer through the interaction itself, wherever the command can run.

The command set is installable both to servers and to users (``integration_types`` 0 and 1) and runs in
servers, the bot's DMs and private channels (``contexts`` 0, 1, 2). A member who installed the app for
themselves can use it where the bot is not a member: there the bot can neither read nor post in the
channel, so the answer goes only through the interaction: deferred at once (Discord's 3 s), the original
response edited as the answer streams (at most once per interval: :class:`~adapters.kit.reply.Pump`),
the parts past Discord's 2,000 characters as follow-ups (the token lasts 15 minutes).

Where the app acts as a user install (not installed to that server, or a private channel), the thread key
is the user's own (workspace :data:`USER_INSTALL`): one conversation that follows them from place to
place, which ``/forget`` forgets there too. In a server the bot is in, and in its DMs, ``/ask`` keeps the
conversation a message there would have.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import discord
from discord import app_commands

from adapters.discord.approvals import interaction_prompter
from adapters.discord.feedback import feedback_view
from adapters.discord.parse import PLATFORM, forget_key
from adapters.discord.reply import DISCORD_TEXT_LIMIT, NO_MENTIONS
from adapters.kit.reply import Pump, PumpedText, deliver
from adapters.kit.text import split_text
from bot.core import Core
from bot.domain import Incoming, ThreadKey

log = logging.getLogger("threadkeeper.discord")

USER_INSTALL = "user-install"
"""The workspace of the conversations held where the app runs as a user install."""


def is_user_install(interaction: discord.Interaction) -> bool:
    """Neither a server the app is installed to nor the bot's own DM: the bot is not there."""
    if interaction.guild_id is not None:
        return not interaction.is_guild_integration()
    return not interaction.context.dm_channel


def interaction_key(interaction: discord.Interaction) -> ThreadKey:
    """The conversation a command works on: the user's own where the app is a user install."""
    if is_user_install(interaction):
        user = str(interaction.user.id)
        return ThreadKey(PLATFORM, USER_INSTALL, user, user)
    return forget_key(interaction)


class InteractionReply(PumpedText):
    """One answer shown by editing an interaction's original response (a :class:`~adapters.kit.reply.Reply`)."""

    def __init__(self, interaction: discord.Interaction, *, interval: float = 1.0, digest: str = "-",
                 limit: int = DISCORD_TEXT_LIMIT) -> None:
        self.interaction = interaction
        self.digest = digest
        self._limit = limit
        self._text = self._tool = self._shown = ""
        self._pump = Pump(self._flush, interval=interval, errors=(discord.HTTPException,), log=log,
                          name="discord-ask")

    async def begin(self) -> None:
        if not self.interaction.response.is_done():
            await self.interaction.response.defer(thinking=True)

    async def finish(self, text: str) -> None:
        await self._pump.stop()
        chunks = [c for c in split_text(text, self._limit) if c.strip()] if text.strip() else []
        if not chunks:
            await self.discard()
            return
        view = feedback_view(self.digest)
        last = len(chunks) - 1
        await self._edit(chunks[0], view if last == 0 else None)
        for n, chunk in enumerate(chunks[1:], 1):  # in order: a follow-up that fails stops the rest
            if n == last:
                await self.interaction.followup.send(chunk, allowed_mentions=NO_MENTIONS, view=view)
            else:
                await self.interaction.followup.send(chunk, allowed_mentions=NO_MENTIONS)

    async def fail(self, sentence: str) -> None:
        await self._pump.stop()
        if self._shown:
            await self.interaction.followup.send(sentence, allowed_mentions=NO_MENTIONS)
        else:
            await self._edit(sentence)

    async def discard(self) -> None:
        await self._pump.stop()
        if not self._shown:
            with contextlib.suppress(discord.HTTPException):
                await self.interaction.delete_original_response()

    async def close(self) -> None:
        await self._pump.stop()

    async def _flush(self) -> float | None:
        text = self._text + (f"\n\n*{self._tool}*" if self._tool else "")
        preview = split_text(text, self._limit)[0] if text.strip() else ""
        if preview and preview != self._shown:
            await self._edit(preview)
        return None

    async def _edit(self, text: str, view: discord.ui.View | None = None) -> None:
        if text == self._shown and view is None:
            return
        if view is None:
            await self.interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS)
        else:
            await self.interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS, view=view)
        self._shown = text


async def answer_ask(core: Core, interaction: discord.Interaction, prompt: str, *, interval: float = 1.0) -> None:
    """Defer at once (everyone there sees the answer coming), then answer by editing the response."""
    await interaction.response.defer(thinking=True)
    key = interaction_key(interaction)
    incoming = Incoming(key=key, text=prompt, message_id=f"interaction:{interaction.id}", direct=True,
                        is_dm=key.workspace in (USER_INSTALL, "dm"), ask=interaction_prompter(interaction))
    reply = InteractionReply(interaction, interval=interval, digest=key.digest)
    try:
        await deliver(core, incoming, reply, log)
    except discord.HTTPException as exc:
        log.error("could not deliver the /ask answer for %s: %s", key.digest, exc)


def ask_command(core: Core, *, interval: float = 1.0) -> app_commands.Command[Any, ..., None]:
    """``/ask``, installable to servers and users, usable in servers, the bot's DMs and private channels."""

    @app_commands.command(name="ask", description="Ask the assistant; works wherever you can use this app")
    @app_commands.describe(prompt="What you want to ask")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    async def ask(interaction: discord.Interaction, prompt: str) -> None:
        await answer_ask(core, interaction, prompt, interval=interval)

    return ask
