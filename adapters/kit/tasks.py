"""The work an adapter has in flight, and the one loop every adapter runs until it is told to stop.

Platforms acknowledge an event before it is answered, so answers run in tasks of their own;
:class:`InFlight` keeps them, so tests can wait for them (:meth:`InFlight.settle`) and shutdown can
let them finish before the connections close (:meth:`InFlight.wait`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

from bot.signals import stop_on_signals

CANCEL_WAIT = 2.0
"""How long cancelled late tasks get to unwind."""


class InFlight:
    """Tasks answering users right now: spawned here, or tracked while they run (a library's own)."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._tasks: set[asyncio.Task[Any]] = set()
        self._progress = asyncio.Event()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` in a task of its own; its failure is logged, never lost."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._spawned_done)
        return task

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Count the current task while inside (for handlers a library already runs as tasks)."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self._tasks.add(task)
        try:
            yield
        finally:
            self._done(task)

    def _spawned_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._log.error("task %s failed", task.get_name(), exc_info=task.exception())
        self._done(task)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._progress.set()

    async def settle(self, within: float = 10.0) -> None:
        """Wait until every task started so far is done (tests, probes); TimeoutError after ``within``."""
        async with asyncio.timeout(within):
            while self._tasks:
                self._progress.clear()
                await self._progress.wait()

    async def wait(self, within: float) -> None:
        """Shutdown: give the tasks ``within`` seconds to finish, then cancel the late ones."""
        pending = self._tasks - {asyncio.current_task()}
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=within)
        for task in late:
            task.cancel()
        if late:
            self._log.warning("shutdown: cancelled %d task(s) still running after %.1f s", len(late), within)
            await asyncio.wait(late, timeout=CANCEL_WAIT)


def event_loop_name() -> str:
    """``uvloop`` or ``asyncio``: which loop runs this (``EVENT_LOOP``), for the adapter's start-up line."""
    return type(asyncio.get_running_loop()).__module__.partition(".")[0]


async def run_until_stopped(
    start: Callable[[], Awaitable[None]],
    drain: Callable[[], Awaitable[None]],
    close: Callable[[], Awaitable[None]],
    *,
    stop: asyncio.Event | None = None,
    until: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """``start``, serve until SIGTERM/SIGINT (or ``stop`` is set), ``drain``; ``close`` in any case.

    ``until`` ends the run early when it returns (an adapter's connection closing for good, stdin at
    its end); an error it raises before ``stop`` is set skips the drain and propagates. It is
    cancelled when ``stop`` comes first, so it must not own what it waits for.
    """
    stopping = stop or asyncio.Event()
    with stop_on_signals(stopping):
        try:
            await start()
            await _first_of(stopping, until)
            await drain()
        finally:
            await close()


async def _first_of(stop: asyncio.Event, until: Callable[[], Coroutine[Any, Any, None]] | None) -> None:
    if until is None:
        await stop.wait()
        return
    stopped = asyncio.create_task(stop.wait())
    ended = asyncio.create_task(until())
    try:
        await asyncio.wait({stopped, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopped, ended):
            task.cancel()
        await asyncio.wait({stopped, ended})
    error = None if ended.cancelled() else ended.exception()
    if error is not None and not stop.is_set():
        raise error
