"""The one way a thread is deleted: by ``/forget``, the janitor, ``threads purge`` and ``forget-user``.

The provider cannot list conversations, so the Redis index is the only record of what exists
remotely, and every deletion follows one order that loses and leaks nothing if it is interrupted
(cancelled, killed, Redis or the provider down) between any two steps:

1. take the thread's lock (the message path's lock: no answer is written meanwhile),
2. write a tombstone for the remote thread (the remote deletion is now owed),
3. delete the remote thread,
4. delete the local mapping, kept turns and index entries,
5. drop the tombstone (or, when the remote deletion failed, keep it without the key: nothing
   local is left, and an erased user must not stay named in Redis).

Interrupted anywhere, either nothing was deleted or a tombstone remains, and the next janitor pass
(:meth:`Deleter.retry`) completes the deletion: kept turns never outlive their tombstone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal

from bot.assistants.base import Assistant
from bot.domain import ThreadKey, hash_user
from bot.store import LockBusy, Store, ThreadRecord, Tombstone

log = logging.getLogger("threadkeeper.deleter")

Outcome = Literal["deleted", "queued", "busy", "active", "gone"]
"""deleted: remotely and locally; queued: locally, the remote deletion stays owed (tombstone);
busy: a message holds the thread; active: no longer idle; gone: nothing (left) to delete."""


class Deleter:
    """Deletes threads in the documented order; ``backends`` maps a backend's name to its client."""

    def __init__(self, store: Store, backends: Mapping[str, Assistant], default: str) -> None:
        self.store = store
        self.backends = dict(backends)
        self.default = default
        """The active backend: records that name none were made by it."""

    async def delete_remote(self, thread_id: str, backend: str) -> bool:
        """True once the remote thread is gone (already gone counts); False leaves it owed."""
        assistant = self.backends.get(backend or self.default)
        if assistant is None:
            log.warning("no %r backend configured; remote thread %s stays queued", backend, thread_id)
            return False
        try:
            await assistant.delete_thread(thread_id)
        except Exception as exc:
            log.warning("remote deletion of %s failed (%s); it stays queued", thread_id, exc)
            return False
        return True

    async def delete_held(self, key: ThreadKey, record: ThreadRecord) -> bool:
        """Steps 2-5 for a thread whose lock the caller holds. True if the remote copy is gone too."""
        backend = record.backend or self.default
        await self.store.add_tombstone(record.thread_id, backend, key)
        done = await self.delete_remote(record.thread_id, backend)
        if not await self.store.delete_local(key, record.thread_id):
            log.warning("%s maps to a new thread now; kept it", key.digest)
        if done:
            await self.store.remove_tombstone(record.thread_id)
        else:
            # Nothing local is left to delete: the owed deletion no longer needs to name the key.
            await self.store.add_tombstone(record.thread_id, backend, owner=hash_user(key.platform, key.user))
        return done

    async def discard(self, thread_id: str, backend: str, key: ThreadKey | None) -> bool:
        """Delete a remote thread the key no longer maps to (rolled over, replaced, never answered)."""
        await self.store.add_tombstone(thread_id, backend, key)
        if not await self.delete_remote(thread_id, backend):
            return False
        await self.store.remove_tombstone(thread_id)
        return True

    async def forget(self, key: ThreadKey, *, wait: float) -> tuple[int, int]:
        """Everything of one key; (threads removed, remote deletions left owed). Waits for the lock."""
        async with self.store.lock(key, wait=wait):
            record = await self.store.get_thread(key)
            if record is None or not record.thread_id:
                await self.store.delete_local(key)
                return (1 if record else 0), 0
            done = await self.delete_held(key, record)
            return 1, 0 if done else 1

    async def remove(self, key: ThreadKey, *, idle_before: float | None = None, wait: float = 0.0) -> Outcome:
        """Delete one thread; with ``idle_before``, only if it had no activity since then."""
        try:
            async with self.store.lock(key, wait=wait):
                record = await self.store.get_thread(key)
                if record is None or not record.thread_id:
                    await self.store.delete_local(key)
                    return "gone"
                if idle_before is not None:
                    seen = await self.store.last_activity(key)
                    if seen is not None and seen > idle_before:
                        return "active"
                return "deleted" if await self.delete_held(key, record) else "queued"
        except LockBusy:
            return "busy"

    async def retry(self, stone: Tombstone, *, wait: float = 0.0) -> Outcome:
        """Finish an owed deletion; if its key still maps to that thread, drop the mapping too."""
        if stone.key is None:
            return "deleted" if await self.discard(stone.thread_id, stone.backend, None) else "queued"
        try:
            async with self.store.lock(stone.key, wait=wait):
                if not await self.store.has_tombstone(stone.thread_id):
                    return "gone"
                if not await self.delete_remote(stone.thread_id, stone.backend):
                    return "queued"
                record = await self.store.get_thread(stone.key)
                if record is not None and record.thread_id == stone.thread_id:
                    await self.store.delete_local(stone.key, stone.thread_id)
                await self.store.remove_tombstone(stone.thread_id)
                return "deleted"
        except LockBusy:
            return "busy"
