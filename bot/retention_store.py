"""Redis operations of retention (janitor, admin CLI) that the message path never needs.

Kept apart from :mod:`bot.store` so the hot path stays small. Everything here
works on a :class:`~bot.store.Store` and its key builder, so the layout of the
keys stays defined in one place (:mod:`bot.keys`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from bot.store import Store, ThreadRecord
from bot.types import ThreadKey

log = logging.getLogger("threadkeeper.retention")

# KEYS: lock. ARGV: token, ttl_ms. 1 if the lease is still ours (and was extended).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lock. ARGV: token. Deletes the lease only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class Lease:
    """The global janitor lock: ``SET NX PX`` with a token, renewed while the work goes on.

    If renewal finds the lease taken by someone else (it expired while Redis was
    unreachable), :attr:`lost` turns True and the holder stops between two threads.
    """

    def __init__(self, store: Store, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self.token = uuid.uuid4().hex
        self.lost = False
        self._renew = store.redis.register_script(_RENEW)
        self._release = store.redis.register_script(_RELEASE)
        self._renewer: asyncio.Task[None] | None = None

    @property
    def key(self) -> str:
        return self.store.keys.janitor_lock()

    async def acquire(self) -> bool:
        if not await self.store.redis.set(self.key, self.token, nx=True, px=_ms(self.ttl)):
            return False
        self._renewer = asyncio.create_task(self._keep())
        return True

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                if not await self._renew(keys=[self.key], args=[self.token, _ms(self.ttl)]):
                    log.warning("janitor lease lost; stopping after the current thread")
                    self.lost = True
                    return
            except RedisError as exc:
                log.warning("could not renew the janitor lease: %s", exc)

    async def release(self) -> None:
        """Give the lease back. Never swallows a cancellation of the caller (only the renewer's)."""
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.wait({self._renewer})
            self._renewer = None
        with contextlib.suppress(RedisError):
            await asyncio.shield(self._release(keys=[self.key], args=[self.token]))


async def _renew_thread_lock(store: Store, key: ThreadKey, token: str) -> None:
    while True:
        await asyncio.sleep(store.lock_ttl / 3)
        try:
            await store.renew(key, None, token)
        except RedisError as exc:
            log.warning("could not renew the lock of %s: %s", key.digest, exc)


@contextlib.asynccontextmanager
async def thread_lock(store: Store, key: ThreadKey, *, wait: float = 0.0) -> AsyncIterator[bool]:
    """The same per-thread Redis lock the message path takes; yields False if still busy after ``wait`` s.

    Held, it keeps messages of that thread out while a deletion runs, so a
    thread is never deleted under an answer that is being written.
    """
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        try:
            status = (await store.begin(key, None, token)).status
        except asyncio.CancelledError:
            with contextlib.suppress(RedisError, asyncio.CancelledError):
                await asyncio.shield(store.release(key, None, token, "keep"))
            raise
        if status != "busy":
            break
        if time.monotonic() >= deadline:
            yield False
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
    renewer = asyncio.create_task(_renew_thread_lock(store, key, token))
    try:
        yield True
    finally:
        renewer.cancel()
        # Shielded: a cancellation arriving now still unlocks, and still propagates.
        with contextlib.suppress(RedisError):
            await asyncio.shield(store.release(key, None, token, "keep"))


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A remote deletion still owed: the thread, its backend, and the key it belonged to (if known)."""

    thread_id: str
    backend: str
    key: ThreadKey | None


async def tombstones(store: Store) -> list[Tombstone]:
    out: list[Tombstone] = []
    async for tid, entry in store.redis.hscan_iter(store.keys.tombstones, count=500):
        backend, _, key_id = _str(entry).partition(" ")
        key: ThreadKey | None = None
        if key_id and key_id != "-":
            try:
                key = ThreadKey.parse(key_id)
            except ValueError:
                key = None
        out.append(Tombstone(_str(tid), backend, key))
    return out


async def tombstone_count(store: Store) -> int:
    return int(await store.redis.hlen(store.keys.tombstones))


async def has_tombstone(store: Store, thread_id: str) -> bool:
    return bool(await store.redis.hexists(store.keys.tombstones, thread_id))


async def last_activity(store: Store, key: ThreadKey) -> float | None:
    """The latest activity any record of the thread knows of; None if the index has no entry."""
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.zscore(store.keys.index, key.id)
        pipe.hget(store.keys.thread(key), "last_active")
        score, hashed = await pipe.execute()
    if score is None and not hashed:
        return None
    values = [float(score or 0)]
    if hashed:
        with contextlib.suppress(ValueError):
            values.append(float(_str(hashed)))
    return max(values)


async def index_backends(store: Store) -> dict[str, str]:
    """Key id -> backend name of every indexed thread (one HSCAN, no per-thread reads)."""
    out: dict[str, str] = {}
    async for key_id, entry in store.redis.hscan_iter(store.keys.index_ids, count=1000):
        out[_str(key_id)] = _str(entry).partition(" ")[0]
    return out


async def records(store: Store, entries: Sequence[tuple[ThreadKey, float]], batch: int = 200) -> list[ThreadRecord]:
    """Full records of index entries, read in pipelined batches.

    ``created`` is 0 and token totals are 0 when the per-thread hash already
    expired: the index still knows the thread, its backend and last activity.
    """
    out: list[ThreadRecord] = []
    for start in range(0, len(entries), batch):
        chunk = entries[start : start + batch]
        async with store.redis.pipeline(transaction=False) as pipe:
            for key, _ in chunk:
                pipe.hgetall(store.keys.thread(key))
                pipe.hget(store.keys.index_ids, key.id)
            replies: list[Any] = await pipe.execute()
        for i, (key, score) in enumerate(chunk):
            data = {_str(k): _str(v) for k, v in (replies[2 * i] or {}).items()}
            backend, _, thread_id = _str(replies[2 * i + 1] or "").partition(" ")
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
