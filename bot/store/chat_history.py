"""The chat backend's history: the server keeps nothing, so the messages live here.

Keys are tagged by the chat thread id (``chat_…``), expire with the same idle TTL as the thread map,
and are dropped with the thread.
"""

from __future__ import annotations

import json

from bot.store.connect import RedisClient
from bot.store.keys import Keys

Message = dict[str, str]
"""A chat message as sent to the server: ``{"role": ..., "content": ...}``."""


class ChatHistory:
    def __init__(self, redis: RedisClient, keys: Keys, *, idle_ttl: float, cluster: bool = False,
                 max_messages: int = 200) -> None:
        self.redis = redis
        self.keys = keys
        self.idle_ttl = idle_ttl
        self.cluster = cluster
        self.max_messages = max_messages
        """Messages kept per thread; the token budget decides how many are sent."""

    def _ttl_ms(self) -> int:
        return int(self.idle_ttl * 1000)

    async def create(self, thread_id: str, platform: str, seed: list[Message]) -> None:
        async with self.redis.pipeline(transaction=not self.cluster) as pipe:
            pipe.set(self.keys.chat_meta(thread_id), json.dumps({"platform": platform}), px=self._ttl_ms())
            for message in seed:
                pipe.rpush(self.keys.chat_history(thread_id), json.dumps(message, ensure_ascii=False))
            pipe.pexpire(self.keys.chat_history(thread_id), self._ttl_ms())
            await pipe.execute()

    async def read(self, thread_id: str) -> list[Message] | None:
        """The thread's messages, oldest first; None when the thread does not exist (any more)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(self.keys.chat_meta(thread_id))
            pipe.lrange(self.keys.chat_history(thread_id), 0, -1)
            exists, raw = await pipe.execute()
        if not exists:
            return None
        return [json.loads(item) for item in raw]

    async def append(self, thread_id: str, messages: list[Message]) -> None:
        async with self.redis.pipeline(transaction=not self.cluster) as pipe:
            pipe.rpush(self.keys.chat_history(thread_id), *(json.dumps(m, ensure_ascii=False) for m in messages))
            pipe.ltrim(self.keys.chat_history(thread_id), -self.max_messages, -1)
            pipe.pexpire(self.keys.chat_history(thread_id), self._ttl_ms())
            pipe.pexpire(self.keys.chat_meta(thread_id), self._ttl_ms())
            await pipe.execute()

    async def delete(self, thread_id: str) -> None:
        await self.redis.delete(self.keys.chat_meta(thread_id), self.keys.chat_history(thread_id))

    async def replace(self, thread_id: str, messages: list[Message]) -> None:
        """Write the thread's messages anew (a speaker erased from a shared conversation); same TTL."""
        name = self.keys.chat_history(thread_id)
        async with self.redis.pipeline(transaction=not self.cluster) as pipe:
            pipe.delete(name)
            if messages:
                pipe.rpush(name, *(json.dumps(m, ensure_ascii=False) for m in messages))
                pipe.pexpire(name, self._ttl_ms())
            await pipe.execute()
