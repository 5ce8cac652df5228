"""Retention: delete threads idle longer than ``THREAD_IDLE_TTL``, remote first, and finish owed deletions.

The provider cannot list conversations, so the Redis index (which never
expires) is the only record of what exists remotely. Every deletion goes
through the core's :class:`~bot.core.deleter.Deleter`, whose one order lets a
janitor killed at any point lose and leak nothing (a busy lock means active).

A pass first finishes the workspace erasures a stopped process left marked
(:func:`bot.core.workspaces.resume_erasures`: an uninstall cut short), then
retries every tombstone (deletions queued by failed forgets or by an earlier,
interrupted pass), then removes the idle threads. A global
lease (``{prefix}:janitor:lock``) lets one janitor work at a time, whether it
runs as ``python -m bot janitor`` or inside bot processes (:func:`janitor_task`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.durations import format_duration
from bot.errors import Unavailable
from bot.runtime import Runtime
from bot.signals import stop_on_signals
from bot.store import LockBusy, StoreError

log = logging.getLogger("threadkeeper.janitor")

DEFAULT_INTERVAL = 3600.0
"""Seconds between passes of the standalone janitor when ``JANITOR_INTERVAL`` is unset."""

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
    erasures: int = 0
    """Workspace erasures finished for a process that stopped in one."""
    stopped: bool = False
    """True when the pass stopped early (shutdown or lost lease)."""
    seconds: float = 0.0


def lease_ttl(runtime: Runtime) -> float:
    """The janitor lease lives two thread-lock lifetimes and is renewed every third of that."""
    return 2 * runtime.store.lock_ttl


async def run_pass(runtime: Runtime, *, stop: asyncio.Event | None = None) -> PassResult:
    """One janitor pass; returns at once (``ran=False``) if another janitor holds the lease."""
    started = time.monotonic()
    result = PassResult()
    try:
        async with runtime.store.lease(lease_ttl(runtime)) as lease:

            def halted() -> bool:
                result.stopped = lease.lost or (stop is not None and stop.is_set())
                return result.stopped

            await _work(runtime, result, halted)
    except LockBusy:
        log.info("janitor pass skipped: another janitor is working")
        return PassResult(ran=False)
    finally:
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


async def _work(runtime: Runtime, result: PassResult, halted: Callable[[], bool]) -> None:
    """Unfinished workspace erasures, owed deletions, then the idle threads; stops between two threads when
    ``halted()``."""
    store, deleter = runtime.store, runtime.core.deleter
    try:
        result.erasures = await runtime.core.resume_erasures()
    except Unavailable as exc:
        raise StoreError(str(exc)) from None  # the loop's one line for Redis failures
    if result.erasures:
        log.info("janitor: finished %d workspace erasures a stopped process had begun", result.erasures)
    for stone in await store.tombstones():
        if halted():
            return
        result.retried += 1
        if await deleter.retry(stone) == "deleted":
            result.completed += 1
    cutoff = time.time() - store.idle_ttl
    entries = [] if halted() else await store.index_entries(cutoff)
    result.idle = len(entries)
    for key, _ in entries:
        if halted():
            return
        outcome = await deleter.remove(key, idle_before=cutoff)
        if outcome == "deleted":
            result.deleted += 1
        elif outcome == "queued":
            result.queued += 1
        elif outcome == "busy":
            result.busy += 1


async def _loop(runtime: Runtime, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await run_pass(runtime, stop=stop)
        except StoreError as exc:
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
