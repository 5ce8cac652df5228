"""One cheap round trip that says whether Redis is usable: for ``doctor`` and the start-up check."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError

Verdict = Literal["ok", "auth", "readonly", "denied", "error", "unreachable"]
"""ok: PING and a test write worked; auth: credentials refused; readonly: a replica; denied: the
user may not read/write; error: some other error reply; unreachable: no connection."""


async def probe(url: str, *, cluster: bool, prefix: str, limit: float) -> Verdict:
    """PING, then write and delete a throwaway key under ``prefix``, each within ``limit`` seconds."""
    options: dict[str, Any] = {"decode_responses": True, "socket_connect_timeout": limit, "socket_timeout": limit}
    client: Redis | RedisCluster
    if cluster:
        client = RedisCluster.from_url(url, **options)
    else:
        client = Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
    key = f"{prefix}:doctor:{uuid.uuid4().hex}"
    try:
        await client.ping()
        await client.set(key, "1", px=10_000)
        await client.delete(key)
    except AuthenticationError:
        return "auth"
    except ResponseError as exc:
        if str(exc).startswith("READONLY"):
            return "readonly"
        if str(exc).startswith(("NOPERM", "NOAUTH")):
            return "denied"
        return "error"
    except (RedisError, OSError):
        return "unreachable"
    finally:
        await client.aclose()
    return "ok"
