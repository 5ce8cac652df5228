"""Neutral types: the only things adapters and the core share.

Adapters turn platform events into :class:`Incoming` and render what the core
returns; they never see Redis or OpenAI objects, and they never show exception
text to users: every error the core raises carries a short sentence meant for
the user (:attr:`BotError.user_message`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

DeltaCallback = Callable[[str], Awaitable[None]]
"""Called with each streamed text delta, in order. Optional for adapters."""


def _escape(part: str) -> str:
    """Keep ':' and the hash-tag braces out of key components."""
    return part.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")


def _unescape(part: str) -> str:
    return part.replace("%7D", "}").replace("%7B", "{").replace("%3A", ":").replace("%25", "%")


@dataclass(frozen=True, slots=True)
class ThreadKey:
    """Who talks where: one assistant thread per key.

    ``workspace`` is the Slack team, the Discord guild, or ``dm``. ``channel``
    may carry a platform thread (``C1/1700000000.0001``) when the adapter
    scopes conversations per platform thread.
    """

    platform: str
    workspace: str
    channel: str
    user: str

    @property
    def id(self) -> str:
        """Stable string form, used as the Redis hash tag and index member."""
        return ":".join(_escape(p) for p in (self.platform, self.workspace, self.channel, self.user))

    @classmethod
    def parse(cls, key_id: str) -> ThreadKey:
        parts = key_id.split(":")
        if len(parts) != 4:
            raise ValueError(f"not a thread key: {key_id!r}")
        platform, workspace, channel, user = (_unescape(p) for p in parts)
        return cls(platform, workspace, channel, user)

    @property
    def user_id(self) -> str:
        """The user across channels of one workspace (backs ``/forget all``)."""
        return ":".join(_escape(p) for p in (self.platform, self.workspace, self.user))

    @property
    def digest(self) -> str:
        """A short one-way hash of the key: safe for logs, metadata and cache keys."""
        return hashlib.sha256(self.id.encode()).hexdigest()[:16]


def hash_user(platform: str, user: str) -> str:
    """One-way user id for provider-side metadata: never names or raw ids."""
    return hashlib.sha256(f"{platform}:{user}".encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Incoming:
    """A user message, parsed by an adapter.

    ``message_id`` drives dedupe (Slack ``event_id``, Discord message id);
    ``reply_to`` is opaque to the core and handed back to the adapter.
    """

    key: ThreadKey
    text: str
    message_id: str
    reply_to: str | None = None
    direct: bool = True
    """True for DMs and direct mentions: the cases that deserve a refusal."""


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


@dataclass(slots=True)
class Answer:
    """The core's reply to one message."""

    text: str
    thread_id: str
    recovered: bool = False
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True, slots=True)
class ForgetResult:
    threads: int
    """How many local threads were removed."""
    remote_pending: int = 0
    """Remote deletions that failed and were queued for the janitor."""


class BotError(Exception):
    """An error with a sentence fit for the user; details go to the log."""

    user_message = "Sorry, something went wrong. Please try again."

    def __init__(self, detail: str = "", user_message: str | None = None) -> None:
        super().__init__(detail or self.user_message)
        if user_message is not None:
            self.user_message = user_message


def user_sentence(exc: Exception, log: logging.Logger, what: str) -> str:
    """The one sentence a user sees for ``exc``; the details go to ``log``, never to the user."""
    if isinstance(exc, BotError):
        log.warning("%s failed (%s): %s", what, type(exc).__name__, exc)
        return exc.user_message
    log.error("%s failed unexpectedly", what, exc_info=exc)
    return BotError.user_message


class Misconfigured(BotError):
    user_message = "The assistant is not configured correctly; the operator has been told."


class Unavailable(BotError):
    user_message = "The assistant is temporarily unavailable, please try again in a moment."


class RateLimited(BotError):
    user_message = "You're sending messages faster than I can answer. Please wait a little and try again."


class TooLong(BotError):
    user_message = "That message is too long for me. Please shorten it and try again."


class BudgetExceeded(BotError):
    user_message = "You've used today's assistant budget. It resets at midnight UTC."


class NotAllowed(BotError):
    user_message = "Sorry, I'm not enabled here."
