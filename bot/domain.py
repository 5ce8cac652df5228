"""Domain types: the only things adapters, the core, the store and the assistants all share.

Adapters turn platform events into :class:`Incoming` and render the :class:`Answer`
the core returns; they never see Redis or OpenAI objects. Errors live in
:mod:`bot.errors`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, NotRequired, TypedDict

DeltaCallback = Callable[[str], Awaitable[None]]
"""Called with each streamed text delta, in order. Optional for adapters."""
StatusCallback = Callable[[str], Awaitable[None]]
"""Called with a short line on what the assistant is doing ("searching the web…"). Optional for adapters."""


@dataclass(frozen=True, slots=True)
class ToolApproval:
    """A tool call the model wants to make that needs the asker's approval (an MCP tool not allowed as
    read-only): what the approval prompt names. The arguments are the model's, untrusted."""

    server: str
    tool: str
    arguments: str
    token: str = ""
    """Set by the core: what the prompt's buttons carry (random; the store binds it to the asker)."""


ApprovalDecision = Literal["approved", "declined", "expired", "failed"]
Approve = Callable[[ToolApproval], Awaitable[ApprovalDecision]]
"""The core's callback for the assistant: ask the asker, wait (bounded) for their decision (``failed``: the
prompt could not be shown, or Redis could not keep the decision)."""
Expire = Callable[[bool], Awaitable[None]]
"""Called when no decision came in time (``False``), or the wait was given up (``True``: cancelled, Redis
failed): the prompt says so, without its buttons (platform errors are the adapter's to log, never raised)."""
AskApproval = Callable[[ToolApproval], Awaitable[Expire | None]]
"""The adapter's: show the asker a private prompt with Approve / Decline buttons (``token`` set); what to call
if it expires, where the platform lets the prompt be changed."""


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

    ``id`` and ``digest`` are computed once per key and kept (an answer reads them a few dozen times: Redis
    keys, locks, logs, metrics); they take no part in equality or ``repr``.
    """

    platform: str
    workspace: str
    channel: str
    user: str
    _id: str = field(default="", init=False, repr=False, compare=False)
    _digest: str = field(default="", init=False, repr=False, compare=False)

    @property
    def id(self) -> str:
        """Stable string form, used as the Redis hash tag and index member."""
        if not self._id:
            value = ":".join(_escape(p) for p in (self.platform, self.workspace, self.channel, self.user))
            object.__setattr__(self, "_id", value)
        return self._id

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
        if not self._digest:
            object.__setattr__(self, "_digest", hashlib.sha256(self.id.encode()).hexdigest()[:16])
        return self._digest

    @property
    def shared(self) -> bool:
        """One conversation for everyone there (a Slack thread or channel): its turns carry their speaker."""
        return self.user == SHARED


SHARED = "*"
"""The ``user`` of a key whose conversation several people share."""


def hash_user(platform: str, user: str) -> str:
    """One-way user id for provider-side metadata: never names or raw ids."""
    return hashlib.sha256(f"{platform}:{user}".encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Quoted:
    """A message by someone else that the user's turn brings along: thread history, the message replied
    to, a forwarded message. Material to read, never instructions (see :mod:`bot.assistants.render`)."""

    author: str
    """A display name (never an e-mail address); ``is_bot`` marks other bots."""
    text: str
    is_bot: bool = False
    user: str = ""
    """The author's platform id, never shown to the model: erasing them finds the turns that quoted them."""


@dataclass(frozen=True, slots=True)
class Gathered:
    """What an adapter read for one message, under the conversation's lock (so it is brought in once)."""

    context: tuple[Quoted, ...] = ()
    mark: str = ""
    """The newest platform message this turn covers: the next turn reads only what came after it."""
    speaker: str = ""
    """The writer's display name, where the adapter looks it up only when the message is answered."""


Gather = Callable[[str], Awaitable[Gathered]]
"""Called by the core with the conversation's mark ("" at first); reads what others wrote since."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file the user shared, already downloaded and checked by the adapter."""

    name: str
    kind: Literal["image", "text", "pdf"]
    mime: str
    data: bytes = b""
    """The bytes, for images and PDFs; never kept by the bot after the answer."""
    text: str = ""
    """Text of a text-like file (bounded, with a visible note where it was cut)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """A user message, parsed by an adapter.

    ``message_id`` drives dedupe (Slack ``event_id``, Discord message id).
    """

    key: ThreadKey
    text: str
    message_id: str
    direct: bool = True
    """True for DMs and direct mentions: the cases that deserve a refusal."""
    is_dm: bool = False
    """A private conversation with the bot: passes channel allowlists (the adapter knows its platform's rule)."""
    speaker: str = ""
    """Who wrote it, as others see them, where one conversation is shared by several people."""
    context: tuple[Quoted, ...] = ()
    """Others' messages this turn brings along, oldest first."""
    attachments: tuple[Attachment, ...] = ()
    author: str = ""
    """The writer's platform id where the key is shared (``key.shared``): whose limits apply, and what
    ``/forget all`` erases from the shared conversation."""
    place: str = ""
    """The platform thread the message is in (``slack:T1:C1/1700000000.0001``): once the bot answers there,
    follow-ups need no mention."""
    gather: Gather | None = field(default=None, compare=False)
    """Reads the context (and the speaker's name) when the message is answered: see :class:`Gathered`."""
    ask: AskApproval | None = field(default=None, compare=False)
    """Shows the asker an approval prompt for a tool call (:mod:`bot.core.approvals`); None: tools that need
    approval are declined."""


@dataclass(frozen=True, slots=True)
class UserTurn:
    """What the core sends the assistant for one message: the cleaned text and what comes with it."""

    text: str
    speaker: str = ""
    context: tuple[Quoted, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    memory: str = ""
    """The thread's rolling summary, for backends that send the history themselves (chat)."""


class Turn(TypedDict):
    """A kept turn, oldest first: re-primes a thread that vanished or outgrew its context."""

    role: str
    """``user`` or ``assistant``."""
    text: str
    by: NotRequired[str]
    """In a shared conversation, who wrote the turn (:func:`hash_user`, one-way): erasing them takes it."""
    about: NotRequired[list[str]]
    """Whom the turn quoted (thread messages, replied-to messages; :func:`hash_user`): erasing them takes it."""


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
    items: tuple[str, ...] = ()
    """The provider's ids of this turn's input items (shared conversations: what erasing a speaker deletes)."""


@dataclass(frozen=True, slots=True)
class ForgetResult:
    threads: int
    """How many local threads were removed."""
    remote_pending: int = 0
    """Remote deletions that failed and were queued for the janitor."""
    reset: tuple[str, ...] = ()
    """Shared conversations forgotten as a whole (their ``ThreadKey.channel``): the adapter says so there."""


