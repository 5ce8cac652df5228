"""Small record types the store reads and writes, instead of long parameter lists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bot.domain import ThreadKey, Turn

Admission = Literal["ok", "notify", "silent"]
"""ok: admitted; notify: over a limit, tell the user once; silent: over it and already told."""

ReleaseMode = Literal["done", "drop", "keep"]
"""What releasing a lock does to its claimed message: ``done`` (the user was told something, so a
redelivery stays silent), ``drop`` (nothing was said: a redelivery may try again) or ``keep``."""


@dataclass(frozen=True, slots=True)
class ThreadRecord:
    key: ThreadKey
    thread_id: str
    backend: str
    created: float
    last_active: float
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class FinishedTurn:
    """One answered message, recorded by :meth:`bot.store.lock.ThreadLock.finish`."""

    thread_id: str
    backend: str
    turns: Sequence[Turn] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    fold: bool = False
    """Move kept items that leave the window to the fold list (memory on)."""
    shared: SharedRecord | None = None
    """What the answer records besides its turn (the context mark, who said what, the joined platform thread),
    written in the same step where one script can (:meth:`bot.store.store.Store.record_turn`)."""


@dataclass(frozen=True, slots=True)
class SharedRecord:
    """An answer's record for shared conversations and thread reading (:mod:`bot.store.shared`)."""

    mark: str = ""
    """The newest platform message brought into the conversation ('' = keep the old mark)."""
    items: tuple[str, ...] = ()
    """The answer's item ids, where someone's words must be found again (shared conversations)."""
    wrote: str = ""
    """The writer's digest in a shared conversation ('' in one person's)."""
    quoted: tuple[str, ...] = ()
    """Digests of the people the turn quoted."""
    reseeded: bool = False
    place: str = ""
    """The platform thread the answer went to: joined (follow-ups there need no mention)."""
    charge: tuple[ThreadKey, int] | None = None
    """The writer's key and the tokens to count against their daily budget."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """What :meth:`bot.store.lock.RedisLock.finish` did: whether the turn was written, and how many kept
    items wait to be folded into the summary."""

    written: bool
    folding: int = 0

    def __bool__(self) -> bool:
        return self.written


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A remote deletion still owed: the thread, its backend, and the key it belonged to (if known)."""

    thread_id: str
    backend: str
    key: ThreadKey | None = None
    owner: str = ""
    """Once the key's local records are gone: the owner as a one-way digest (``hash_user``), never the key."""


@dataclass(frozen=True, slots=True)
class Mapping:
    """What a thread key maps to when its lock is taken (empty strings: no thread yet)."""

    thread_id: str = ""
    backend: str = ""
    summary: str = ""
    """The thread's memory (a rolling summary of turns that left the window)."""
    mark: str = ""
    """The newest platform message already brought into the conversation (:mod:`bot.store.shared`)."""
