"""Where the app is installed (Slack OAuth: one installation per workspace), and install flows under way.

An installation is kept whole as one sealed value (:mod:`bot.crypto`, ``TOKEN_ENCRYPTION_KEY``): its bot
token, and also which workspace it is and that workspace's name, are never in Redis in clear. Its key names
the workspace by a one-way digest, like every per-workspace key (:mod:`bot.store.keys`); a set of those
digests is what ``doctor`` counts. On Cluster the value and the set are written one after the other (value
first, so the set never lists a workspace that has nothing).

An install flow's ``state`` (begun at ``/slack/install`` by one worker, finished at the redirect by any
worker) is kept under its digest with a TTL and used at most once: consuming it is a ``DEL``, which only
one caller sees succeed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from bot.crypto import Sealer, Undecryptable
from bot.store.connect import RedisClient
from bot.store.keys import Keys

log = logging.getLogger("threadkeeper.store")


def _digest(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:32]


class Installations:
    """The installations port: sealed records by workspace, and single-use install states."""

    def __init__(self, redis: RedisClient, keys: Keys, sealer: Sealer) -> None:
        self.redis = redis
        self.keys = keys
        self.sealer = sealer

    def _key(self, platform: str, workspace: str) -> tuple[str, str]:
        digest = _digest("install", platform, workspace)
        return self.keys.installation(digest), digest

    async def save(self, platform: str, workspace: str, record: dict[str, Any]) -> None:
        """Keep (or replace) a workspace's installation."""
        key, digest = self._key(platform, workspace)
        sealed = self.sealer.seal(json.dumps(record, separators=(",", ":")).encode())
        await self.redis.set(key, sealed.decode())
        await self.redis.sadd(self.keys.installations, digest)  # type: ignore[misc]

    async def find(self, platform: str, workspace: str) -> dict[str, Any] | None:
        """The workspace's installation; None when there is none, or when no key opens it (logged)."""
        key, _ = self._key(platform, workspace)
        sealed = await self.redis.get(key)
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
        key, digest = self._key(platform, workspace)
        removed = await self.redis.delete(key)
        await self.redis.srem(self.keys.installations, digest)  # type: ignore[misc]
        return bool(removed)

    async def count(self) -> int:
        """How many workspaces have the app installed."""
        return int(await self.redis.scard(self.keys.installations))  # type: ignore[misc]

    async def issue_state(self, state: str, ttl: float) -> None:
        """Remember an install flow's state for ``ttl`` seconds."""
        await self.redis.set(self.keys.oauth_state(_digest("state", state)), "1", px=max(1, round(ttl * 1000)))

    async def consume_state(self, state: str) -> bool:
        """True exactly once for a state issued and not expired; False for any other (forged, reused, late)."""
        return bool(await self.redis.delete(self.keys.oauth_state(_digest("state", state))))


__all__ = ["Installations"]
