"""Remote threads made but never recorded (Redis failed between create and save): deleted by the process
that made them, at once or, while the provider fails too, every ``RETRY`` seconds until it stops.

Nothing else could ever find such a thread (the Redis index is the only list of what exists on the
provider), so this process is the only one that can delete it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("threadkeeper.core")

RETRY = 30.0
"""Seconds between tries to delete threads that were made but could not be recorded."""


class Unrecorded:
    def __init__(self, delete: Callable[[str], Awaitable[None]]) -> None:
        self._delete = delete
        self.pending: set[str] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def drop(self, thread_id: str) -> None:
        """Delete it now; on failure keep it and retry in the background."""
        try:
            await self._delete(thread_id)
        except Exception as exc:
            self.pending.add(thread_id)
            log.error("thread %s could not be recorded nor deleted (%s); retrying every %.0f s", thread_id, exc,
                      RETRY)
            if self._sweeper is None or self._sweeper.done():
                self._sweeper = asyncio.create_task(self._sweep())
            return
        log.warning("deleted thread %s at once: it could not be recorded", thread_id)

    async def _sweep(self) -> None:
        while self.pending:
            await asyncio.sleep(RETRY)
            await self._try_all(final=False)

    async def _try_all(self, *, final: bool) -> None:
        for thread_id in sorted(self.pending):
            try:
                await self._delete(thread_id)
            except Exception as exc:
                if final:
                    log.error("left unrecorded thread %s on the provider (%s): delete it by hand", thread_id, exc)
                else:
                    log.warning("unrecorded thread %s still not deleted: %s", thread_id, exc)
                continue
            self.pending.discard(thread_id)
            log.info("deleted unrecorded thread %s", thread_id)

    async def close(self) -> None:
        """Stop retrying after one last try; the log names what is left."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self._try_all(final=True)
