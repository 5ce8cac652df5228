"""Wiring: settings -> Redis client -> store -> assistant backend -> core."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.assistants.base import Assistant
from bot.config import Settings
from bot.core import Core
from bot.metrics import Metrics
from bot.store import RedisClient, Store

log = logging.getLogger("threadkeeper")

EMBEDDED_WARNING = (
    "REDIS_URL is not set: using an embedded in-process store. State is lost on restart "
    "and cannot be shared by several workers; set REDIS_URL for production."
)


def make_redis(settings: Settings) -> RedisClient:
    """A client that reconnects by itself when Redis comes back."""
    if not settings.redis_url:
        import fakeredis

        log.warning(EMBEDDED_WARNING)
        client: RedisClient = fakeredis.FakeAsyncRedis(decode_responses=True)
        return client
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2)
    common = {
        "decode_responses": True,
        "socket_timeout": 5.0,
        "socket_connect_timeout": 2.0,
        "health_check_interval": 30,
        "retry": retry,
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, max_connections=settings.redis_max_connections, **common)  # type: ignore[arg-type]
    # A blocking pool: past REDIS_MAX_CONNECTIONS commands wait for a connection instead of failing.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=settings.redis_max_connections, timeout=20, **common
    )
    return Redis.from_pool(pool)


def make_store(settings: Settings, redis: RedisClient) -> Store:
    return Store(
        redis,
        prefix=settings.redis_prefix,
        idle_ttl=settings.thread_idle_ttl,
        lock_ttl=settings.lock_ttl,
        dedupe_ttl=settings.dedupe_ttl,
        keep_items=settings.keep_turns,
        cluster=settings.redis_cluster,
    )


def make_assistant(settings: Settings, store: Store, name: str | None = None) -> Assistant:
    backend = name or settings.assistant_backend
    if backend == "chat":
        from bot.assistants.chat import ChatAssistant

        return ChatAssistant(settings, store)
    from bot.assistants.conversations import ConversationsAssistant

    return ConversationsAssistant(settings)


@dataclass
class Runtime:
    settings: Settings
    redis: RedisClient
    store: Store
    assistant: Assistant
    core: Core
    metrics: Metrics
    others: dict[str, Assistant] = field(default_factory=dict)

    async def close(self) -> None:
        for assistant in (self.assistant, *self.others.values()):
            await assistant.close()
        await self.redis.aclose()


def build_runtime(settings: Settings, *, redis: RedisClient | None = None) -> Runtime:
    """Everything a command needs; call :meth:`Runtime.close` when done."""
    client = redis if redis is not None else make_redis(settings)
    store = make_store(settings, client)
    assistant = make_assistant(settings, store)
    others: dict[str, Assistant] = {}
    if settings.openai_api_key or settings.openai_base_url:
        for name in ("conversations", "chat"):
            if name != assistant.name:
                others[name] = make_assistant(settings, store, name)
    metrics = Metrics()
    core = Core(store, assistant, settings, metrics=metrics, others=others)
    return Runtime(settings, client, store, assistant, core, metrics, others)


__all__ = ["Redis", "Runtime", "build_runtime", "make_redis", "make_store"]
