"""The one Redis lock: every thread's, and the janitor's lease. Shaped like redis-py's lock.

``async with store.lock(key, claim=message_id, wait=30) as lock:`` takes the thread's lock (waiting
with backoff while another worker holds it), claims the message for dedupe in the same round trip,
reads the thread's mapping, and renews lock and claim every third of their lifetime until released.
The lock owns its token, its renewal task, its backoff and how its release treats the claim:

* leaving the block normally releases with :attr:`RedisLock.mode` (``done`` for a claimed message:
  the user was told something, so a redelivery stays silent; ``keep`` without a claim);
* leaving it by cancellation releases with ``drop`` (nothing was said: a redelivery may try again);
* :meth:`RedisLock.finish` records the answered turn and releases in one script.

Release is shielded, so a cancel arriving meanwhile still unlocks, and still propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, cast

from bot.domain import ThreadKey
from bot.store.connect import StoreError
from bot.store.records import FinishedTurn, Mapping, Recorded, ReleaseMode

if TYPE_CHECKING:
    from bot.store.store import Store

log = logging.getLogger("threadkeeper.store")

FIRST_BACKOFF = 0.02
MAX_BACKOFF = 0.5


class Duplicate(Exception):
    """The claimed message was already taken by another delivery (being answered, or answered)."""


class LockBusy(Exception):
    """Another holder still had the lock when the wait ran out."""


class RedisLock:
    """One lock on one key; see the module docstring. Build it with ``store.lock()`` or ``store.lease()``."""

    def __init__(
        self,
        store: Store,
        lock_key: str,
        *,
        name: str,
        ttl: float,
        wait: float = 0.0,
        thread: ThreadKey | None = None,
        claim: str | None = None,
    ) -> None:
        self.store = store
        self.name = name
        """For log lines: a thread digest or ``janitor``; never a user id."""
        self.ttl = ttl
        self.wait = wait
        self.token = uuid.uuid4().hex
        self.thread = thread
        self.claim = claim
        self.mode: ReleaseMode = "done" if claim else "keep"
        self.mapping = Mapping()
        self.lost = False
        """True once a renewal found the lock taken by someone else (it lapsed while Redis was away)."""
        keys = store.keys
        self._keys = [lock_key]
        if thread is not None:
            self._keys.append(keys.thread(thread))
            if claim:
                self._keys.append(keys.seen(thread, claim))
        self._claim = len(self._keys) == 3
        self._renewer: asyncio.Task[None] | None = None
        self._released = False

    @property
    def _claim_keys(self) -> list[str]:
        """The lock key and, when claiming, the message's dedupe marker (lock ops touch just those)."""
        return [self._keys[0], self._keys[-1]] if self._claim else [self._keys[0]]

    async def __aenter__(self) -> RedisLock:
        return await self.acquire()

    async def acquire(self) -> RedisLock:
        """Take the lock, waiting up to :attr:`wait` s; raises :class:`Duplicate` or :class:`LockBusy`.

        Taking it again while held is harmless (the script is idempotent for our token).
        """
        self._released = False
        deadline = time.monotonic() + self.wait
        delay = FIRST_BACKOFF
        try:
            while True:
                status, mapping = await self._acquire()
                if status == "dup":
                    raise Duplicate(self.name)
                if self._renewer is None:
                    # From the first try on: a claim waiting for the lock must not lapse meanwhile.
                    self._renewer = asyncio.create_task(self._renew_forever())
                if status == "ok":
                    self.mapping = mapping
                    return self
                if time.monotonic() + delay > deadline:
                    raise LockBusy(self.name)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
        except Duplicate:
            raise
        except BaseException as exc:
            await self._release("drop" if isinstance(exc, asyncio.CancelledError) else self.mode)
            raise

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        cancelled = et is not None and issubclass(et, asyncio.CancelledError)
        await self._release("drop" if cancelled else self.mode)

    async def finish(self, turn: FinishedTurn) -> Recorded:
        """Record an answered turn and release; falsy if the lock had lapsed (only the dedupe mark written)."""
        if self.thread is None:
            raise TypeError("only a thread's lock records turns")
        self._stop_renewing()
        recorded = await self.store.record_turn(self.thread, self.claim, self.token, turn)
        self._released = True  # only now: after a failed record, release() must still unlock
        return recorded

    async def release(self, mode: ReleaseMode | None = None) -> None:
        """Release early (idempotent); the block's end then does nothing more."""
        await self._release(mode or self.mode)

    # -- internals ---------------------------------------------------------------------------------
    async def _acquire(self) -> tuple[str, Mapping]:
        args: list[str | int] = [self.token, _ms(self.ttl), "1" if self._claim else "0", _ms(2 * self.ttl)]
        reply = cast(list[str], await self.store.scripts.acquire(keys=self._keys, args=args))
        return reply[0], Mapping(*reply[1:5]) if len(reply) >= 5 else Mapping()

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                ours = await self.store.scripts.renew(
                    keys=self._claim_keys, args=[self.token, _ms(self.ttl), _ms(2 * self.ttl)]
                )
            except StoreError as exc:
                log.warning("could not renew the lock of %s: %s", self.name, exc)
                continue
            if not ours and not self.lost:
                self.lost = True
                log.warning("the lock of %s was lost (it lapsed while Redis was unreachable)", self.name)

    def _stop_renewing(self) -> None:
        """Cancel renewal without waiting: a renewal racing the release finds the token gone and does nothing."""
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None

    async def _release(self, mode: ReleaseMode) -> None:
        self._stop_renewing()
        if self._released:
            return
        self._released = True
        releasing = asyncio.ensure_future(
            self.store.scripts.release(keys=self._claim_keys, args=[self.token, mode, _ms(self.store.dedupe_ttl)])
        )
        releasing.add_done_callback(_retrieved)
        with contextlib.suppress(StoreError):
            await asyncio.shield(releasing)


def _retrieved(task: asyncio.Future[object]) -> None:
    """A release that outlived its cancelled holder fails quietly: the lock lapses by itself."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("releasing a lock failed: %s", task.exception())


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
