"""Store helpers for tests: seed threads the way the message path records them, read owed deletions."""

from __future__ import annotations

from bot.domain import ThreadKey, Turn
from bot.store import FinishedTurn, Store


async def record(
    store: Store,
    key: ThreadKey,
    thread_id: str,
    turns: list[Turn] | None = None,
    *,
    backend: str = "conversations",
    input_tokens: int = 0,
    output_tokens: int = 0,
) -> None:
    """Record one answered turn under the thread's lock, as the core does."""
    async with store.lock(key) as lock:
        assert await lock.finish(FinishedTurn(thread_id, backend, turns or [], input_tokens, output_tokens))


async def owed(store: Store) -> dict[str, str]:
    """Remote deletions still owed: thread id -> backend."""
    return {stone.thread_id: stone.backend for stone in await store.tombstones()}


async def claim_like_a_dead_worker(store: Store, key: ThreadKey, message_id: str | None) -> None:
    """Take the thread's lock (and claim the message) and never renew nor release it: a killed worker."""
    keys = [store.keys.lock(key), store.keys.thread(key)]
    if message_id:
        keys.append(store.keys.seen(key, message_id))
    ms = int(store.lock_ttl * 1000)
    reply = await store.scripts.acquire(keys=keys, args=["dead-worker", ms, "1" if message_id else "0", 2 * ms])
    assert reply[0] == "ok"
