"""The protocol every assistant backend implements, and the errors it raises.

Backends translate provider errors into these types so the core can decide:
:class:`ThreadGone` triggers one silent recovery, :class:`ContextOverflow` one
silent roll-over, and :class:`~bot.errors.BotError` subclasses reach the user
as a sentence (``bot.assistants.errors.UnknownModel``, a Misconfigured, for a
model the server does not know, in any shape).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.domain import Approve, DeltaCallback, StatusCallback, ThreadKey, Turn, Usage, UserTurn
from bot.profiles import Profile


class ThreadGone(Exception):
    """The remote thread no longer exists (deleted, expired, purged)."""


class ContextOverflow(Exception):
    """The thread outgrew the model's context window."""


@dataclass(slots=True)
class Sent:
    text: str
    usage: Usage = field(default_factory=Usage)
    items: tuple[str, ...] = ()
    """Ids that find this turn's items on the provider again (:meth:`Assistant.delete_items`), so one speaker of
    a shared conversation can be erased: the Conversations backend gives its answer's output items (known from
    the response itself, at no extra call), the chat backend a digest of the user message."""
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    """(tool, outcome) of every tool call the model made: ``web_search``/``mcp:docs``, ``completed``/``failed``, or
    for one that needed approval ``approved``/``declined``/``expired``."""


class Assistant(Protocol):
    name: str
    seed_limit: int | None
    """Most items :meth:`create_thread` primes a thread with (the newest are kept); None: no limit."""

    async def create_thread(self, key: ThreadKey, seed: Sequence[Turn] = ()) -> str:
        """A new remote thread, primed with ``seed`` (oldest first)."""
        ...

    async def send(
        self, thread_id: str, turn: UserTurn, *, key: ThreadKey, on_delta: DeltaCallback | None = None,
        profile: Profile | None = None, on_status: StatusCallback | None = None, approve: Approve | None = None,
    ) -> Sent:
        """Add the user's turn and return the answer. Raises ThreadGone, ContextOverflow, BotError.

        ``profile`` (model, instructions, tools) goes with this request only; None means the settings'.
        ``on_status`` hears what the assistant is doing meanwhile ("searching the web…"); ``approve`` asks the
        asker about a tool call that needs approval (None: such calls are declined)."""
        ...

    async def delete_thread(self, thread_id: str) -> None:
        """Delete the remote thread. Idempotent: a thread that is already gone is fine."""
        ...

    async def delete_items(self, thread_id: str, item_ids: Sequence[str]) -> None:
        """Delete the turns ``item_ids`` (:attr:`Sent.items`) find, their input and their answer (a speaker erased
        from a shared conversation). Turns already gone are fine."""
        ...

    async def summarize(self, turns: Sequence[Turn], *, words: int = 120) -> Sent:
        """A short summary of ``turns``, used to re-prime a rolled-over thread."""
        ...

    async def check_model(self) -> None:
        """Raise ``UnknownModel`` (a Misconfigured) if the server does not know ``OPENAI_MODEL``.

        A server without a models endpoint counts as OK; connection errors raise Unavailable.
        """
        ...

    def supported(self, param: str) -> bool:
        """False once the server refused the optional request parameter ``param`` (this process's view)."""
        ...

    async def refused_params(self) -> list[str]:
        """Optional parameters the server refused for this model, as every worker learned them (sorted)."""
        ...

    async def close(self) -> None: ...
