"""Helpers for retention tests: make a real thread, then pretend time went by."""

from __future__ import annotations

import time

from bot.domain import Incoming, ThreadKey
from bot.runtime import Runtime


async def start(rt: Runtime, key: ThreadKey, mid: str) -> str:
    """One answered message through the core; returns the thread it made or used."""
    answer = await rt.core.handle(Incoming(key, "hello there", message_id=mid))
    assert answer is not None
    return answer.thread_id


async def age(rt: Runtime, key: ThreadKey, seconds: float) -> None:
    """Pretend the thread was last used ``seconds`` ago (index score and mapping agree)."""
    then = time.time() - seconds
    await rt.redis.zadd(rt.store.keys.index, {key.id: then})
    if await rt.redis.exists(rt.store.keys.thread(key)):
        await rt.redis.hset(rt.store.keys.thread(key), "last_active", repr(then))
