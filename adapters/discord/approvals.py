"""Approval prompts for tool calls in Discord, and their clicks.

When a tool call needs the asker's approval (:mod:`bot.core.approvals`), a prompt names the server, the
tool and a short rendering of its arguments (:mod:`adapters.kit.approvals`, sent with mentions that ping
nobody) over Approve / Decline buttons whose ``custom_id`` carries the approval's random token
(``tk-approval:<yes|no>:<token>``, recognised in ``on_interaction`` by whatever process gets the click):

* answering an interaction (``/ask``): an ephemeral follow-up, which only the asker sees;
* answering a channel message: a message where the answer goes; anyone there sees it, so the store
  checks that the clicker is the asker, and anyone else is told privately that only the asker can decide.

A click is deferred at once (Discord's 3 s do not wait for Redis), then decided: the asker's replaces the
prompt with what was decided, without its buttons (the original response of a deferred update is the
prompt); anyone else, or a Redis failure, gets an ephemeral follow-up. A prompt nobody answered in time, or
whose wait was given up (shutdown, Redis), says so, without its buttons.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import discord

from adapters.discord.parse import button_click
from adapters.discord.reply import NO_MENTIONS
from adapters.kit.approvals import EXPIRED, FAILED, GONE, NOT_YOURS, WITHDRAWN, decided_text, parts
from bot.core import Core
from bot.domain import AskApproval, Expire, ToolApproval
from bot.errors import BotError

log = logging.getLogger("threadkeeper.discord")

PREFIX = "tk-approval:"


def approval_text(request: ToolApproval) -> str:
    server, tool, arguments = parts(request)
    return (f"**Approve a tool call?** `{server}` wants to run `{tool}` with `{arguments}`\n"
            "-# Only the person who asked can approve or decline it.")


def approval_view(token: str) -> discord.ui.View:
    """Approve / Decline; ``custom_id`` names the choice and the token (under Discord's 100 characters)."""
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(style=discord.ButtonStyle.success, label="Approve",
                                    custom_id=f"{PREFIX}yes:{token}"[:100]))
    view.add_item(discord.ui.Button(style=discord.ButtonStyle.danger, label="Decline",
                                    custom_id=f"{PREFIX}no:{token}"[:100]))
    return view


def expiry(prompt: discord.Message | discord.WebhookMessage) -> Expire:
    """When no decision came in time, or the wait was given up (``withdrawn``): the prompt says so, without
    its buttons."""
    async def expire(withdrawn: bool) -> None:
        try:
            await prompt.edit(content=WITHDRAWN if withdrawn else EXPIRED, view=None, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("could not mark an approval prompt as expired: %s", exc)

    return expire


def channel_prompter(destination: Callable[[], Awaitable[discord.abc.Messageable]]) -> AskApproval:
    """Prompts in the channel (or thread) the answer goes to; ``destination`` is the reply's own."""
    async def ask(request: ToolApproval) -> Expire:
        target = await destination()
        return expiry(await target.send(approval_text(request), view=approval_view(request.token),
                                        allowed_mentions=NO_MENTIONS))

    return ask


def interaction_prompter(interaction: discord.Interaction) -> AskApproval:
    """Prompts as an ephemeral follow-up of the interaction being answered (``/ask``)."""
    async def ask(request: ToolApproval) -> Expire:
        return expiry(await interaction.followup.send(approval_text(request), view=approval_view(request.token),
                                                      ephemeral=True, allowed_mentions=NO_MENTIONS, wait=True))

    return ask


class DiscordApprovals:
    """Answers clicks on approval prompts (called from the adapter's ``on_interaction``)."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        click = button_click(interaction, PREFIX)
        if click is None or click[0] not in ("yes", "no"):
            return
        choice, token = click
        try:
            await interaction.response.defer()  # within Discord's 3 s, whatever Redis takes
        except discord.HTTPException as exc:
            log.warning("could not acknowledge an approval click: %s", exc)
            return  # nothing recorded: the asker's next click counts
        try:
            outcome, label = await self.core.approvals.decide("discord", token, str(interaction.user.id),
                                                              choice == "yes")
        except BotError as exc:
            log.warning("could not record an approval click: %s", exc)
            await self._say(interaction, FAILED)
            return
        try:
            if outcome == "decided":
                text = decided_text("approved" if choice == "yes" else "declined", label)
                await interaction.edit_original_response(content=text, view=None, allowed_mentions=NO_MENTIONS)
            elif outcome == "not_yours":
                log.info("refused an approval click by someone other than the asker")
                await self._say(interaction, NOT_YOURS)
            else:
                await interaction.edit_original_response(content=GONE, view=None, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("could not answer an approval click: %s", exc)

    @staticmethod
    async def _say(interaction: discord.Interaction, text: str) -> None:
        """One line only the clicker sees (the click is deferred: a follow-up)."""
        try:
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("could not answer an approval click: %s", exc)
