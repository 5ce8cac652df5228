"""Making the Redis client: the only place that knows which client the store runs on."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.errors import Unavailable

log = logging.getLogger("threadkeeper.store")

RedisClient = Redis | RedisCluster

StoreError = RedisError
"""What any store call raises when Redis fails: callers catch this name and never import redis."""


@contextlib.contextmanager
def unavailable() -> Iterator[None]:
    """Redis failing is :class:`~bot.errors.Unavailable` for the store's callers (adapters never see redis)."""
    try:
        yield
    except StoreError as exc:
        raise Unavailable(f"redis: {exc}") from None


def as_str(value: object) -> str:
    """Redis replies are ``str`` (decode_responses=True); typing says ``bytes | str``."""
    return value.decode() if isinstance(value, bytes) else str(value)

EMBEDDED_WARNING = (
    "REDIS_URL is not set: using an embedded in-process store. State is lost on restart "
    "and cannot be shared by several workers; set REDIS_URL for production."
)


def make_redis(url: str | None, *, cluster: bool = False, max_connections: int = 50) -> RedisClient:
    """A client that reconnects by itself when Redis comes back; embedded (fakeredis) without a URL."""
    if not url:
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
    if cluster:
        return RedisCluster.from_url(url, max_connections=max_connections, **common)  # type: ignore[arg-type]
    # A blocking pool: past the limit, commands wait for a connection instead of failing.
    pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=20, **common)
    return Redis.from_pool(pool)
