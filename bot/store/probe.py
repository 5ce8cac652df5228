"""One cheap round trip that says whether Redis is usable: for ``doctor`` and the start-up check.

:func:`examine` gives a :class:`Finding`: a :data:`Verdict` and a short reason. The reason never
carries the URL's password (it is scrubbed), so callers may print it.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import uuid
from collections.abc import Iterator
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisClusterException, RedisError, ResponseError

Verdict = Literal["ok", "auth", "readonly", "denied", "error", "unreachable", "badurl", "not_cluster", "cluster"]
"""ok: PING and a test write worked; auth: credentials refused; readonly: a replica; denied: the
user may not read/write; error: some other error reply; unreachable: no connection; badurl: the URL
cannot be used at all; not_cluster: a cluster client met a single server; cluster: a single-server
client met a Redis Cluster node."""

_CLUSTER_REPLIES = ("MOVED", "ASK", "CLUSTERDOWN", "CROSSSLOT")
_ERRNO = re.compile(r"Error (-?\d+) connecting")


class Finding(NamedTuple):
    verdict: Verdict
    detail: str = ""
    """Why, in a few words ("Connection refused", the server's error reply, ...); empty when ok."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _unreachable(exc: BaseException) -> str:
    """The network reason ("Connection refused", "Name or service not known", "timed out")."""
    for err in _chain(exc):
        if isinstance(err, socket.gaierror):
            return str(err.strerror or err)
        if isinstance(err, TimeoutError) or "Timeout" in str(err):
            return "timed out"
        if isinstance(err, OSError) and err.errno:
            return os.strerror(err.errno)
    for err in _chain(exc):
        if (match := _ERRNO.search(str(err))) and int(match[1]) > 0:
            return os.strerror(int(match[1]))
    return str(exc) or type(exc).__name__


def _cluster_client(err: RedisClusterException) -> Finding | None:
    """What the cluster client's own exceptions mean; None: look at their cause."""
    text = str(err)
    if "Cluster mode is not enabled" in text:
        return Finding("not_cluster", text)
    if "must be 0 or None in cluster mode" in text:
        return Finding("badurl", "a cluster has only database 0")
    if "cannot be connected" in text:
        return None
    return Finding("error", text)


def _classify(exc: BaseException) -> Finding:
    for err in _chain(exc):
        text = str(err)
        if isinstance(err, AuthenticationError):
            return Finding("auth", text)
        if isinstance(err, RedisClusterException) and (found := _cluster_client(err)) is not None:
            return found
        if isinstance(err, ResponseError):
            if text.startswith(_CLUSTER_REPLIES):
                return Finding("cluster", text)
            if text.startswith("READONLY"):
                return Finding("readonly", text)
            if text.startswith(("NOPERM", "NOAUTH")):
                return Finding("denied", text)
            return Finding("error", text)
    return Finding("unreachable", _unreachable(exc))


async def _is_cluster_node(client: Redis) -> bool:
    """``INFO cluster`` says ``cluster_enabled:1`` on a cluster node; a server that refuses INFO is no proof."""
    try:
        info = await client.info("cluster")
    except ResponseError:
        return False
    return str(info.get("cluster_enabled", "0")) == "1"


async def _round_trip(client: Redis | RedisCluster, key: str) -> Finding:
    await client.ping()
    if isinstance(client, Redis) and await _is_cluster_node(client):
        return Finding("cluster", "INFO cluster: cluster_enabled:1")
    await client.set(key, "1", px=10_000)
    await client.delete(key)
    return Finding("ok")


def _scrub(finding: Finding, url: str) -> Finding:
    password = urlsplit(url).password
    if password and password in finding.detail:
        return finding._replace(detail=finding.detail.replace(password, "***"))
    return finding


async def examine(url: str, *, cluster: bool, prefix: str, limit: float) -> Finding:
    """PING, ``INFO cluster``, then write and delete a throwaway key under ``prefix``; all within ``limit`` s."""
    options: dict[str, Any] = {"decode_responses": True, "socket_connect_timeout": limit, "socket_timeout": limit}
    client: Redis | RedisCluster
    try:
        if cluster:
            client = RedisCluster.from_url(url, **options)
        else:
            client = Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
    except ValueError as exc:
        scheme = "scheme" in str(exc)
        return _scrub(Finding("badurl", "it needs redis://, rediss:// or unix://" if scheme else str(exc)), url)
    except RedisClusterException as exc:
        return _scrub(_classify(exc), url)
    key = f"{prefix}:doctor:{uuid.uuid4().hex}"
    try:
        async with asyncio.timeout(limit):
            return await _round_trip(client, key)
    except TimeoutError:
        return Finding("unreachable", f"no answer within {limit:g}s")
    except (RedisError, RedisClusterException, OSError, ValueError) as exc:
        return _scrub(_classify(exc), url)
    finally:
        try:
            await client.aclose()
        except (RedisError, RedisClusterException, OSError):
            pass


async def probe(url: str, *, cluster: bool, prefix: str, limit: float) -> Verdict:
    """:func:`examine`'s verdict alone."""
    return (await examine(url, cluster=cluster, prefix=prefix, limit=limit)).verdict
