"""Facts learned about the assistant server, shared by every worker (the assistants' ``Notes`` port).

One hash per server and model (the key hashes the opaque ``server`` name, which holds the base URL).
Each value carries its own expiry (``"<unix expiry> <value>"``), so a fact lives :data:`NOTES_TTL`
from when it was learned even when later facts keep the hash alive; the hash itself expires
:data:`NOTES_TTL` after its last write. Writes are one Lua script, so exactly one worker is told
"new" for a fact (and logs it).
"""

from __future__ import annotations

import time

from bot.store.connect import RedisClient, as_str
from bot.store.keys import Keys

NOTES_TTL = 86400.0
"""How long a learned fact (a refused parameter, a context size) is trusted: a server may be upgraded."""

WRITE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local sep = string.find(current, ' ', 1, true)
  local expiry = tonumber(sep and string.sub(current, 1, sep - 1) or current)
  local value = sep and string.sub(current, sep + 1) or ''
  if expiry and expiry > tonumber(ARGV[3]) and (ARGV[5] == '0' or value == ARGV[2]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4] .. ' ' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
"""



class ServerNotes:
    def __init__(self, redis: RedisClient, keys: Keys, *, ttl: float = NOTES_TTL) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl
        self._write = redis.register_script(WRITE)

    async def read(self, server: str) -> dict[str, str]:
        """Every fact about ``server`` that has not expired."""
        raw = await self.redis.hgetall(self.keys.server_notes(server))  # type: ignore[misc]
        now = time.time()
        out: dict[str, str] = {}
        for field, stored in raw.items():
            expiry, _, value = as_str(stored).partition(" ")
            try:
                if float(expiry) > now:
                    out[as_str(field)] = value
            except ValueError:
                continue
        return out

    async def write(self, server: str, field: str, value: str, *, replace: bool = False) -> bool:
        """Set a fact; True if it was new (or expired, or ``replace`` and different), False if known."""
        now = time.time()
        args = [field, value, repr(now), repr(now + self.ttl), "1" if replace else "0", int(self.ttl * 1000)]
        return bool(await self._write(keys=[self.keys.server_notes(server)], args=args))

    async def forget(self, server: str) -> None:
        """Drop every fact about ``server`` (after an upgrade, or from a test)."""
        await self.redis.delete(self.keys.server_notes(server))
