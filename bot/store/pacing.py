"""Rate-limit lanes shared by every worker: one workspace's budget per platform method, in Redis.

The adapters pace their platform calls through lanes (``adapters.kit.pacing`` explains the rules: turns
one ``interval`` apart, an interval that doubles on a refusal and decays while calls go through, a block
until ``Retry-After``, a per-channel hold). Several worker processes answering in one Slack workspace
spend one budget, so its lanes live here, where all of them see the same numbers: each operation is
one Lua script, atomic, timed by the Redis server's clock (so workers' clocks need not agree).

A lane is a hash ``{next, blocked, interval, since}`` (milliseconds) that expires when idle; holds and the
once-a-minute warning flag are plain keys with a TTL. All of one scope's keys share its hash tag.

A refusal also sets the scope's *loud* key, which lives until the refused lane is quiet again (block over,
interval back at the base). While no worker has set it the scope is quiet, and the adapters' pacer spaces its
calls in lanes of its own, asking here only for channels' holds (``adapters.kit.pacing``): each worker reads the
key at most every ``recheck`` seconds (0.1 s; one ``PTTL`` per scope and worker, whatever the number of calls),
and learns it at no cost from every hold and every refusal it asks for. The bound: another worker's refusal
reaches this worker's calls that take no hold (``chat.update``, ``chat.appendStream``, ``chat.stopStream``) at
most ``recheck`` plus one round trip late; this worker's own refusal, and any it hears of, make the scope loud
here at once, for every method. A reservation in a quiet scope takes the hold alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from bot.store.connect import RedisClient
from bot.store.keys import Keys

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function decayed(interval, since, base, half_life)
  return math.max(base, interval * 0.5 ^ (math.max(0, now - since) / half_life))
end
"""

# KEYS: lane, loud, [hold]. ARGV: urgent (1|0), base_ms, half_life_ms, horizon_ms, lane_ttl_ms, holder, hold_ttl_ms,
# poll_ms, quiet_base (1|0: base <= QUIET_BASE). Returns {1, wait_ms, loud_ms} (a turn is ours, and the hold) or
# {0, ask_again_in_ms, loud_ms}; loud_ms: how long the scope stays loud (<= 0: it is quiet; then only the hold counts).
RESERVE = _NOW + """
local loud = redis.call('PTTL', KEYS[2])
if KEYS[3] then
  local holder = redis.call('GET', KEYS[3])
  if holder and holder ~= ARGV[6] then
    return {0, math.max(1, math.min(redis.call('PTTL', KEYS[3]), tonumber(ARGV[8]))), loud}
  end
end
if ARGV[9] == '1' and loud <= 0 then
  if KEYS[3] then redis.call('SET', KEYS[3], ARGV[6], 'PX', ARGV[7]) end
  return {1, 0, loud}
end
local lane = redis.call('HMGET', KEYS[1], 'next', 'blocked', 'interval', 'since')
local base = tonumber(ARGV[2])
local interval = decayed(tonumber(lane[3]) or base, tonumber(lane[4]) or 0, base, tonumber(ARGV[3]))
local wait = math.max(now, tonumber(lane[1]) or 0, tonumber(lane[2]) or 0) - now
if ARGV[1] ~= '1' then
  if wait > 0 then return {0, wait, loud} end
elseif wait > tonumber(ARGV[4]) then
  return {0, wait - tonumber(ARGV[4]), loud}
end
redis.call('HSET', KEYS[1], 'next', now + wait + interval)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if KEYS[3] then redis.call('SET', KEYS[3], ARGV[6], 'PX', math.floor(wait + tonumber(ARGV[7]))) end
return {1, wait, loud}
"""

# KEYS: lane, notice, loud. ARGV: retry_after_ms, base_ms, cap_ms, lane_ttl_ms, notice_ttl_ms, half_life_ms, floor_ms
# Returns {first refusal of the scope this minute (1|0), interval_ms, loud_ms}. The loud key lives until the lane
# is quiet again (see adapters.kit.pacing.quiet_after), or longer if another lane of the scope needs it.
REFUSED = _NOW + """
local lane = redis.call('HMGET', KEYS[1], 'blocked', 'interval', 'since')
local base = tonumber(ARGV[2])
local blocked = tonumber(lane[1]) or 0
local interval = tonumber(lane[2]) or base
local since = tonumber(lane[3]) or 0
if now >= blocked then
  interval = decayed(interval, since, base, tonumber(ARGV[6])) * 2
  interval = math.min(tonumber(ARGV[3]), math.max(tonumber(ARGV[7]), interval))
  since = now
end
blocked = math.max(blocked, now + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'blocked', blocked, 'interval', interval, 'since', since)
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[4]), blocked - now + 1000))
local first = redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[5])
local decay = tonumber(ARGV[6]) * math.log(math.max(1, interval / base)) / math.log(2)
local quiet = math.ceil(math.max(blocked, since + decay))
local loud = redis.call('PTTL', KEYS[3])
if quiet - now > loud then
  loud = quiet - now
  redis.call('SET', KEYS[3], '1', 'PX', loud)
end
return {first and 1 or 0, math.floor(interval), loud}
"""

# KEYS: hold. ARGV: holder.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


QUIET_BASE = 0.001
"""As ``adapters.kit.pacing.QUIET_BASE`` (the store does not import the adapters)."""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class SharedLanes:
    """The lanes of every scope (``slack:T…``), shared through Redis; see ``adapters.kit.pacing.Lanes``.

    Errors propagate: the adapters' pacer falls back to its own process's view when Redis fails.
    """

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        *,
        base: float = 0.001,
        floor: float = 0.04,
        cap: float = 8.0,
        half_life: float = 5.0,
        horizon: float = 0.1,
        idle_ttl: float = 120.0,
        hold_ttl: float = 15.0,
        poll: float = 0.05,
        notice_every: float = 60.0,
        recheck: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.base, self.floor, self.cap, self.half_life, self.horizon = base, floor, cap, half_life, horizon
        self.idle_ttl, self.hold_ttl, self.poll, self.notice_every = idle_ttl, hold_ttl, poll, notice_every
        self.recheck = recheck
        """How long a quiet scope is taken to stay quiet before the loud key is read again (seconds): another
        worker's refusal reaches this one's calls that take no hold this late at most (plus the read's round trip)."""
        self._clock = clock
        self._loud: dict[str, tuple[float, float]] = {}
        """scope -> (when the loud key was last read, on ``clock``; when the scope is quiet again)."""
        self._reserve = redis.register_script(RESERVE)
        self._refused = redis.register_script(REFUSED)
        self._release = redis.register_script(RELEASE)

    async def reserve(self, scope: str, method: str, *, urgent: bool, channel: str = "",
                      holder: str = "") -> tuple[bool, float]:
        keys = [self.keys.pace(scope, method), self.keys.pace_loud(scope)]
        if channel:
            keys.append(self.keys.pace_hold(scope, method, channel))
        args = ["1" if urgent else "0", _ms(self.base), _ms(self.half_life), _ms(self.horizon), _ms(self.idle_ttl),
                holder or "-", _ms(self.hold_ttl), _ms(self.poll), "1" if self.base <= QUIET_BASE else "0"]
        granted, wait_ms, loud_ms = await self._reserve(keys=keys, args=args)
        self._heard(scope, int(loud_ms))
        return bool(int(granted)), int(wait_ms) / 1000

    async def refused(self, scope: str, method: str, retry_after: float) -> bool:
        self._heard(scope, _ms(retry_after))  # loud here at once, for every method, before the script answers
        keys = [self.keys.pace(scope, method), self.keys.pace_notice(scope), self.keys.pace_loud(scope)]
        args = [_ms(retry_after), _ms(self.base), _ms(self.cap), _ms(self.idle_ttl), _ms(self.notice_every),
                _ms(self.half_life), _ms(self.floor)]
        first, _interval, loud_ms = await self._refused(keys=keys, args=args)
        self._heard(scope, int(loud_ms))
        return bool(int(first))

    async def quiet(self, scope: str) -> bool:
        if self.base > QUIET_BASE:
            return False
        now = self._clock()
        read, until = self._loud.get(scope, (-math.inf, -math.inf))
        if now - read >= self.recheck:
            self._loud[scope] = (now, until)  # the others asking meanwhile take the last answer, not a round trip
            self._heard(scope, int(await self.redis.pttl(self.keys.pace_loud(scope))))
            read, until = self._loud[scope]
        return until <= now

    def _heard(self, scope: str, loud_ms: int) -> None:
        """The loud key's time to live as a script or ``PTTL`` just read it (negative: there is none).

        Replies can arrive out of order (a ``PTTL`` sent before a refusal's script, answered after it): a loud
        state still ahead is kept (the key only ever lives longer), so an older "quiet" never overwrites it."""
        now = self._clock()
        if len(self._loud) > 1000:
            self._loud = {s: v for s, v in self._loud.items() if now - v[0] < self.recheck or v[1] > now}
        until = now + loud_ms / 1000 if loud_ms > 0 else -math.inf
        self._loud[scope] = (now, max(until, self._loud.get(scope, (now, -math.inf))[1]))

    async def release(self, scope: str, method: str, channel: str, holder: str) -> None:
        await self._release(keys=[self.keys.pace_hold(scope, method, channel)], args=[holder or "-"])

    async def interval(self, scope: str, method: str) -> float:
        """The lane's spacing of calls as the last refusal set it, before its decay (tests, the bench)."""
        value = await self.redis.hget(self.keys.pace(scope, method), "interval")  # type: ignore[misc]
        return float(value) / 1000 if value is not None else self.base
