"""Feedback buttons under every finished Discord answer, and their clicks.

:class:`FeedbackReply` is the adapter's :class:`~adapters.discord.reply.DiscordReply` that, once the answer
is final, puts two buttons under its last message. Their ``custom_id`` is persistent
(``tk-feedback:<value>:<thread digest>``): clicks are recognised in ``on_interaction`` whatever process
sent the buttons, after a restart too. A click is counted (:func:`bot.core.feedback.record_feedback`,
one Redis write), then gets an ephemeral thank-you, well within Discord's 3 s: the thread's one-way
digest and the message id are logged, nobody's text.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import discord

from adapters.discord.parse import button_click
from adapters.discord.reply import DiscordReply
from bot.core import Core
from bot.core.feedback import FEEDBACK_VALUES, record_feedback
from bot.errors import BotError

log = logging.getLogger("threadkeeper.discord")

PREFIX = "tk-feedback:"
THANKS = {"positive": "Thanks for the feedback! Glad that helped.",
          "negative": "Thanks for the feedback! I'll take it into account."}


def feedback_view(digest: str) -> discord.ui.View:
    """The two buttons; ``custom_id`` names the value and the thread's digest (under Discord's 100 characters)."""
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(style=discord.ButtonStyle.secondary, emoji="👍", label="Good response",
                                    custom_id=f"{PREFIX}positive:{digest}"[:100]))
    view.add_item(discord.ui.Button(style=discord.ButtonStyle.secondary, emoji="👎", label="Bad response",
                                    custom_id=f"{PREFIX}negative:{digest}"[:100]))
    return view


class FeedbackReply(DiscordReply):
    """A :class:`DiscordReply` whose final answer ends with the feedback buttons (in its final render: the
    channel's edit budget covers them, no extra edit)."""

    def __init__(self, *args: Any, digest: str = "-", **kwargs: Any) -> None:
        super().__init__(*args, digest=digest, final_view=functools.partial(feedback_view, digest), **kwargs)


class DiscordFeedback:
    """Answers clicks on the buttons (a ``client.event``: the handler's name is the event's)."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        click = button_click(interaction, PREFIX)
        if click is None or click[0] not in FEEDBACK_VALUES:
            return
        value, digest = click
        message = f"{interaction.channel_id}:{interaction.message.id if interaction.message else '-'}"
        try:  # one Redis write (milliseconds): the thank-you still goes well within the 3 s
            await record_feedback(self.core, "discord", value, digest=digest or "-", message=message)
        except BotError as exc:
            log.warning("could not keep the feedback on %s: %s", message, exc)
        try:
            await interaction.response.send_message(THANKS[value], ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("could not thank for feedback: %s", exc)
