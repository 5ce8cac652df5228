"""Retention: delete threads idle longer than ``THREAD_IDLE_TTL``, remote first, and finish owed deletions.

The provider cannot list conversations, so the Redis index (which never
expires) is the only record of what exists remotely. Every deletion follows
one order, so a janitor killed at any point loses and leaks nothing:

1. take the thread's Redis lock (the message path's lock; busy means active),
2. write a tombstone for the remote thread (the deletion is now queued),
3. delete the remote thread, 4. delete the local mapping, 5. drop the tombstone.

A pass first retries every tombstone (deletions queued by failed forgets or
by an earlier, interrupted pass), then removes the idle threads. A global
lease (``{prefix}:janitor:lock``) lets one janitor work at a time, whether it
runs as ``python -m bot janitor`` or inside bot processes (:func:`janitor_task`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Literal

from redis.exceptions import RedisError

from bot.assistants.base import Assistant
from bot.durations import format_duration
from bot.retention_store import Lease, Tombstone, has_tombstone, last_activity, thread_lock, tombstones
from bot.runtime import Runtime
from bot.service import stop_on_signals
from bot.types import ThreadKey

log = logging.getLogger("threadkeeper.janitor")

DEFAULT_INTERVAL = 3600.0
"""Seconds between passes of the standalone janitor when ``JANITOR_INTERVAL`` is unset."""

Outcome = Literal["deleted", "queued", "busy", "active", "gone"]
"""deleted: remotely and locally; queued: locally, the remote deletion stays owed (tombstone);
busy: a message holds the thread; active: no longer idle; gone: nothing (left) to delete."""


@dataclass(slots=True)
class PassResult:
    ran: bool = True
    """False when another janitor held the lease."""
    idle: int = 0
    deleted: int = 0
    queued: int = 0
    busy: int = 0
    retried: int = 0
    completed: int = 0
    stopped: bool = False
    """True when the pass stopped early (shutdown or lost lease)."""
    seconds: float = 0.0


class Remover:
    """Remote-first deletion of one thread or one tombstone; shared by the janitor and the admin CLI."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store

    def backend(self, name: str) -> Assistant | None:
        active = self.runtime.assistant
        if not name or name == active.name:
            return active
        return self.runtime.others.get(name)

    async def delete_remote(self, thread_id: str, backend: str) -> bool:
        """True once the remote thread is gone (already-gone counts); False leaves it owed."""
        assistant = self.backend(backend)
        if assistant is None:
            log.warning("no %r backend configured; remote thread %s stays queued", backend, thread_id)
            return False
        try:
            await assistant.delete_thread(thread_id)
        except Exception as exc:
            log.warning("remote deletion of %s failed (%s); it stays queued", thread_id, exc)
            return False
        return True

    async def remove(self, key: ThreadKey, *, idle_before: float | None = None, wait: float = 0.0) -> Outcome:
        """Delete one thread; with ``idle_before``, only if it had no activity since then."""
        async with thread_lock(self.store, key, wait=wait) as held:
            if not held:
                return "busy"
            record = await self.store.get_thread(key)
            if record is None or not record.thread_id:
                await self.store.delete_local(key)
                return "gone"
            if idle_before is not None:
                seen = await last_activity(self.store, key)
                if seen is not None and seen > idle_before:
                    return "active"
            backend = record.backend or self.runtime.assistant.name
            await self.store.add_tombstone(record.thread_id, backend, key)
            done = await self.delete_remote(record.thread_id, backend)
            if not await self.store.delete_local(key, record.thread_id):
                log.warning("%s maps to a new thread now; kept it", key.digest)
            if done:
                await self.store.remove_tombstone(record.thread_id)
            return "deleted" if done else "queued"

    async def retry(self, stone: Tombstone, *, wait: float = 0.0) -> Outcome:
        """Finish an owed deletion; if its key still maps to that thread, drop the mapping too."""
        if stone.key is None:
            if not await self.delete_remote(stone.thread_id, stone.backend):
                return "queued"
            await self.store.remove_tombstone(stone.thread_id)
            return "deleted"
        async with thread_lock(self.store, stone.key, wait=wait) as held:
            if not held:
                return "busy"
            if not await has_tombstone(self.store, stone.thread_id):
                return "gone"
            if not await self.delete_remote(stone.thread_id, stone.backend):
                return "queued"
            record = await self.store.get_thread(stone.key)
            if record is not None and record.thread_id == stone.thread_id:
                await self.store.delete_local(stone.key, stone.thread_id)
            await self.store.remove_tombstone(stone.thread_id)
            return "deleted"


def lease_ttl(runtime: Runtime) -> float:
    """The janitor lease lives two thread-lock lifetimes and is renewed every third of that."""
    return 2 * runtime.store.lock_ttl


async def run_pass(runtime: Runtime, *, stop: asyncio.Event | None = None) -> PassResult:
    """One janitor pass; returns at once (``ran=False``) if another janitor holds the lease."""
    started = time.monotonic()
    store = runtime.store
    lease = Lease(store, lease_ttl(runtime))
    if not await lease.acquire():
        log.info("janitor pass skipped: another janitor is working")
        return PassResult(ran=False)
    result = PassResult()
    remover = Remover(runtime)

    def halted() -> bool:
        result.stopped = lease.lost or (stop is not None and stop.is_set())
        return result.stopped

    try:
        for stone in await tombstones(store):
            if halted():
                break
            result.retried += 1
            if await remover.retry(stone) == "deleted":
                result.completed += 1
        cutoff = time.time() - store.idle_ttl
        entries = [] if halted() else await store.index_entries(cutoff)
        result.idle = len(entries)
        for key, _ in entries:
            if halted():
                break
            outcome = await remover.remove(key, idle_before=cutoff)
            if outcome == "deleted":
                result.deleted += 1
            elif outcome == "queued":
                result.queued += 1
            elif outcome == "busy":
                result.busy += 1
    finally:
        await lease.release()
        result.seconds = time.monotonic() - started
    log.info(
        "janitor pass: %d of %d idle threads deleted, %d left queued for remote deletion, %d busy; "
        "%d of %d queued deletions completed; %.2fs%s",
        result.deleted,
        result.idle,
        result.queued,
        result.busy,
        result.completed,
        result.retried,
        result.seconds,
        " (stopped early)" if result.stopped else "",
    )
    return result


async def _loop(runtime: Runtime, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await run_pass(runtime, stop=stop)
        except RedisError as exc:
            log.error("janitor pass failed, Redis unavailable: %s", exc)
        except Exception:
            log.exception("janitor pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def janitor_task(runtime: Runtime) -> None:
    """Background janitor for bot processes: a pass every ``JANITOR_INTERVAL``, until cancelled.

    Returns at once when ``JANITOR_INTERVAL`` is unset. Safe in every worker:
    the lease lets one pass run at a time, and cancelling mid-pass is harmless.
    """
    interval = runtime.settings.janitor_interval
    if not interval:
        return
    await _loop(runtime, interval, asyncio.Event())


async def run_forever(runtime: Runtime, stop: asyncio.Event | None = None) -> int:
    """``python -m bot janitor``: passes every ``JANITOR_INTERVAL`` (default 1h) until SIGTERM/SIGINT."""
    stop = stop or asyncio.Event()
    interval = runtime.settings.janitor_interval or DEFAULT_INTERVAL
    log.info(
        "janitor started: a pass every %s; threads idle over %s are deleted",
        format_duration(interval),
        format_duration(runtime.store.idle_ttl),
    )
    with stop_on_signals(stop):
        await _loop(runtime, interval, stop)
    log.info("janitor stopped")
    return 0
