"""Helpers shared by tests (leftovers)."""

from __future__ import annotations

import re

import redis.asyncio as aioredis

from bot.runtime import Runtime


async def leftovers(rt: Runtime, words: list[str]) -> list[str]:
    """Every key or value under the test's prefix that contains one of ``words`` in clear.

    A word counts where it stands alone, not inside a longer run of letters and digits: a marker such as "5512"
    turns up by chance in random ids (``chat_c4da7f55127744…``), which name nobody."""
    alone = [re.compile(rf"(?<![0-9A-Za-z]){re.escape(w)}(?![0-9A-Za-z])") for w in words]
    client: aioredis.Redis = rt.store.redis  # type: ignore[assignment]
    found: list[str] = []
    async for name in client.scan_iter(match=f"{rt.settings.redis_prefix}:*", count=500):
        kind = await client.type(name)
        if kind == "string":
            values = [await client.get(name)]
        elif kind == "hash":
            values = [f"{k}={v}" for k, v in (await client.hgetall(name)).items()]
        elif kind == "list":
            values = await client.lrange(name, 0, -1)
        elif kind == "set":
            values = list(await client.smembers(name))
        elif kind == "zset":
            values = [m for m, _ in await client.zrange(name, 0, -1, withscores=True)]
        else:
            values = []
        for text in [name, *map(str, values)]:
            found += [f"{name}: {w}" for w, pattern in zip(words, alone, strict=True) if pattern.search(text)]
    return found
