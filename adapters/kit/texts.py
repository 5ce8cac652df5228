"""What a user reads when something is done for them or goes wrong: ``/forget`` replies, error sentences.

Every adapter answers ``/forget`` with the same four facts (nothing was there, this conversation went,
several went, the provider's copy goes later); only the wording differs per platform, so each platform
has a :class:`ForgetTexts` and they all go through :func:`forget_text`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.domain import ForgetResult
from bot.errors import BotError


def user_sentence(exc: Exception, log: logging.Logger, what: str) -> str:
    """The one sentence a user sees for ``exc``; the details go to ``log``, never to the user."""
    if isinstance(exc, BotError):
        log.warning("%s failed (%s): %s", what, type(exc).__name__, exc)
        return exc.user_message
    log.error("%s failed unexpectedly", what, exc_info=exc)
    return BotError.user_message


@dataclass(frozen=True, slots=True)
class ForgetTexts:
    """One platform's wording of a ``/forget`` reply.

    ``everything``, ``here`` and ``here_many`` may use ``{n}`` (threads forgotten) and ``{s}`` (``s``
    unless ``n`` is 1).
    """

    nothing: str
    """``/forget all`` found nothing."""
    nothing_here: str
    """``/forget`` found nothing in this conversation."""
    everything: str
    """``/forget all`` forgot ``{n}`` threads."""
    here: str
    """``/forget`` forgot this conversation."""
    here_many: str
    """``/forget`` forgot several threads (a channel and its threads)."""
    pending: str = ""
    """Appended when the provider's copy could not be deleted yet (the janitor retries)."""


SLACK_FORGET = ForgetTexts(
    nothing="There was nothing to forget.",
    nothing_here="There was nothing to forget here.",
    everything="Done: I forgot all your conversations in this workspace ({n}).",
    here="Done: I forgot our conversation here. Your next message starts a new one.",
    here_many="Done: I forgot your {n} conversations in this channel and its threads.",
    pending=" The assistant provider's copy will be deleted shortly.",
)

_DISCORD_HERE = "Done: I've forgotten our conversation here. Your next message starts fresh."
DISCORD_FORGET = ForgetTexts(
    nothing="There was nothing to forget.",
    nothing_here="There was nothing to forget.",
    everything="Done: I've forgotten {n} conversation{s}.",
    here=_DISCORD_HERE,
    here_many=_DISCORD_HERE,
    pending=" Removing the copy on the assistant's side will finish shortly.",
)

_CONSOLE_DONE = "Forgot {n} conversation{s}."
CONSOLE_FORGET = ForgetTexts(
    nothing="There was nothing to forget.",
    nothing_here="There was nothing to forget.",
    everything=_CONSOLE_DONE,
    here=_CONSOLE_DONE,
    here_many=_CONSOLE_DONE,
)


def forget_text(texts: ForgetTexts, result: ForgetResult, *, everything: bool) -> str:
    """The reply to ``/forget`` (``everything``: ``/forget all``) once the core has done it."""
    n = result.threads
    if n == 0:
        template = texts.nothing if everything else texts.nothing_here
    elif everything:
        template = texts.everything
    else:
        template = texts.here_many if n > 1 else texts.here
    text = template.format(n=n, s="" if n == 1 else "s")
    return text + texts.pending if result.remote_pending else text


def memory_text(summary: str, kept: int, *, forget: str = "/forget") -> str:
    """``/memory``: what the bot remembers of the conversation here, privately, and how to erase it."""
    if not summary and not kept:
        return "I don't remember anything of our conversation here."
    parts = ["Here is what I remember of our conversation here."]
    if summary:
        parts.append(f"Summary of the earlier part: {summary}")
    if kept:
        plural = "s" if kept != 1 else ""
        parts.append(f"I also keep the last {kept} message{plural} of it to pick up where we left off.")
    parts.append(f"Use {forget} to erase all of it.")
    return "\n".join(parts)
