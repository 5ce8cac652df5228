"""Where the app is installed (Slack OAuth: one installation per workspace), and install flows under way.

An installation is kept whole as one sealed value (:mod:`bot.crypto`, ``TOKEN_ENCRYPTION_KEY``): its bot
token, and also which workspace it is and that workspace's name, are never in Redis in clear. Its key names
the workspace by a one-way digest, like every per-workspace key (:mod:`bot.store.keys`); a set of those
digests is what ``doctor`` counts. On Cluster the value and the set are written one after the other (value
first, so the set never lists a workspace that has nothing).

An install flow's ``state`` (begun at ``/slack/install`` by one worker, finished at the redirect by any
worker) is kept under its digest with a TTL and used at most once: consuming it is a ``DEL``, which only
one caller sees succeed.

A workspace being erased (it uninstalled the app, or ``threads forget-workspace``) is marked in
``{prefix}:install:erasing`` before anything is deleted (:class:`Erasures`): the field is the workspace's digest,
the value the digest of the installation to delete once its threads are gone. A process that dies mid-way leaves
the mark, and the janitor's next pass finishes the erasure; the mark names no workspace in clear.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from bot.crypto import Sealer, Undecryptable
from bot.store.connect import RedisClient, unavailable
from bot.store.keys import Keys

log = logging.getLogger("threadkeeper.store")


def _digest(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:32]


def workspace_digest(platform: str, workspace: str) -> str:
    """A workspace, one-way: its installation's key and its erasure mark are named by it."""
    return _digest("install", platform, workspace)


class Installations:
    """The installations port: sealed records by workspace, and single-use install states. Every method raises
    :class:`~bot.errors.Unavailable` when Redis fails."""

    def __init__(self, redis: RedisClient, keys: Keys, sealer: Sealer) -> None:
        self.redis = redis
        self.keys = keys
        self.sealer = sealer

    async def save(self, platform: str, workspace: str, record: dict[str, Any]) -> None:
        """Keep (or replace) a workspace's installation."""
        digest = workspace_digest(platform, workspace)
        sealed = self.sealer.seal(json.dumps(record, separators=(",", ":")).encode())
        with unavailable():
            await self.redis.set(self.keys.installation(digest), sealed.decode())
            await self.redis.sadd(self.keys.installations, digest)  # type: ignore[misc]

    async def find(self, platform: str, workspace: str) -> dict[str, Any] | None:
        """The workspace's installation; None when there is none, or when no key opens it (logged)."""
        with unavailable():
            sealed = await self.redis.get(self.keys.installation(workspace_digest(platform, workspace)))
        if sealed is None:
            return None
        try:
            record = json.loads(self.sealer.open(str(sealed).encode()))
        except Undecryptable:
            log.error("an installation in Redis cannot be decrypted with TOKEN_ENCRYPTION_KEY (was the key "
                      "changed without keeping the old one after it?); that workspace must install the app again")
            return None
        return record if isinstance(record, dict) else None

    async def delete(self, platform: str, workspace: str) -> bool:
        """Drop a workspace's installation; True if there was one."""
        with unavailable():
            return await drop_installation(self.redis, self.keys, workspace_digest(platform, workspace))

    async def count(self) -> int:
        """How many workspaces have the app installed."""
        with unavailable():
            return int(await self.redis.scard(self.keys.installations))  # type: ignore[misc]

    async def issue_state(self, state: str, ttl: float) -> None:
        """Remember an install flow's state for ``ttl`` seconds."""
        with unavailable():
            await self.redis.set(self.keys.oauth_state(_digest("state", state)), "1", px=max(1, round(ttl * 1000)))

    async def consume_state(self, state: str) -> bool:
        """True exactly once for a state issued and not expired; False for any other (forged, reused, late)."""
        with unavailable():
            return bool(await self.redis.delete(self.keys.oauth_state(_digest("state", state))))


async def drop_installation(redis: RedisClient, keys: Keys, digest: str) -> bool:
    """Drop the installation kept under ``digest``; True if there was one."""
    removed = await redis.delete(keys.installation(digest))
    await redis.srem(keys.installations, digest)  # type: ignore[misc]
    return bool(removed)


class Erasures:
    """Workspace erasures under way, by digest (see the module docstring): no sealing key is needed to finish one."""

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def begin(self, platform: str, workspace: str, installation: str | None) -> str:
        """Mark ``workspace`` as being erased (and ``installation``, the workspace whose installation goes last,
        None for none); returns the mark, for :meth:`finish`."""
        digest = workspace_digest(platform, workspace)
        owed = workspace_digest(platform, installation) if installation else ""
        await self.redis.hset(self.keys.erasing, digest, owed)  # type: ignore[misc]
        return digest

    async def pending(self) -> dict[str, str]:
        """Erasures begun and not finished: workspace digest -> installation digest ('' for none)."""
        marks = await self.redis.hgetall(self.keys.erasing)  # type: ignore[misc]
        return {str(k): str(v) for k, v in marks.items()}

    async def finish(self, mark: str) -> bool:
        """The threads are gone: the installation goes, then the mark. True if an installation was removed."""
        owed = await self.redis.hget(self.keys.erasing, mark)  # type: ignore[misc]
        removed = await drop_installation(self.redis, self.keys, str(owed)) if owed else False
        await self.redis.hdel(self.keys.erasing, mark)  # type: ignore[misc]
        return removed


__all__ = ["Erasures", "Installations", "drop_installation", "workspace_digest"]
