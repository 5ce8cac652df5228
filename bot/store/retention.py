"""The store's reads for retention (janitor, admin CLI) that the message path never needs.

A mixin of :class:`bot.store.store.Store`, kept apart so the hot path's module stays small.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from bot.domain import ThreadKey
from bot.store.connect import RedisClient, as_str
from bot.store.keys import Keys
from bot.store.records import ThreadRecord, Tombstone


class RetentionReads:
    redis: RedisClient
    keys: Keys

    async def tombstones(self) -> list[Tombstone]:
        """Every remote deletion still owed."""
        out: list[Tombstone] = []
        async for tid, entry in self.redis.hscan_iter(self.keys.tombstones, count=500):
            backend, key_id, owner = [*as_str(entry).split(" ", 2), "", ""][:3]
            key: ThreadKey | None = None
            if key_id and key_id != "-":
                with contextlib.suppress(ValueError):
                    key = ThreadKey.parse(key_id)
            out.append(Tombstone(as_str(tid), backend, key, owner))
        return out

    async def tombstone_count(self) -> int:
        return int(await self.redis.hlen(self.keys.tombstones))  # type: ignore[misc]

    async def has_tombstone(self, thread_id: str) -> bool:
        return bool(await self.redis.hexists(self.keys.tombstones, thread_id))  # type: ignore[misc]

    async def last_activity(self, key: ThreadKey) -> float | None:
        """The latest activity any record of the thread knows of; None if the index has no entry."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zscore(self.keys.index, key.id)
            pipe.hget(self.keys.thread(key), "last_active")
            score, hashed = await pipe.execute()
        if score is None and not hashed:
            return None
        values = [float(score or 0)]
        if hashed:
            with contextlib.suppress(ValueError):
                values.append(float(as_str(hashed)))
        return max(values)

    async def index_backends(self) -> dict[str, str]:
        """Key id -> backend name of every indexed thread (one HSCAN, no per-thread reads)."""
        out: dict[str, str] = {}
        async for key_id, entry in self.redis.hscan_iter(self.keys.index_ids, count=1000):
            out[as_str(key_id)] = as_str(entry).partition(" ")[0]
        return out

    async def records(self, entries: Sequence[tuple[ThreadKey, float]], batch: int = 200) -> list[ThreadRecord]:
        """Full records of index entries, read in pipelined batches.

        ``created`` is 0 and token totals are 0 when the per-thread hash already
        expired: the index still knows the thread, its backend and last activity.
        """
        out: list[ThreadRecord] = []
        for start in range(0, len(entries), batch):
            chunk = entries[start : start + batch]
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, _ in chunk:
                    pipe.hgetall(self.keys.thread(key))
                    pipe.hget(self.keys.index_ids, key.id)
                replies: list[Any] = await pipe.execute()
            for i, (key, score) in enumerate(chunk):
                data = {as_str(k): as_str(v) for k, v in (replies[2 * i] or {}).items()}
                backend, _, thread_id = as_str(replies[2 * i + 1] or "").partition(" ")
                out.append(
                    ThreadRecord(
                        key=key,
                        thread_id=data.get("thread_id") or thread_id,
                        backend=data.get("backend") or backend,
                        created=float(data.get("created") or 0),
                        last_active=score,
                        input_tokens=int(data.get("input_tokens") or 0),
                        output_tokens=int(data.get("output_tokens") or 0),
                    )
                )
        return out
