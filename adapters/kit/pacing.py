"""Calls under a platform's rate limits: which may go now, which wait their turn, which are skipped.

A *lane* is one method's budget in one scope (a Slack workspace, a Discord channel). A call is either

* **urgent**: the final text of an answer. It waits for its turn, however long, up to a deadline;
* a **luxury**: an intermediate edit of an answer still streaming. It goes only when the lane is free
  right now, and is skipped otherwise: the next edit carries its text anyway, and the answer's end never
  waits behind a queue of edits.

Each lane keeps three numbers:

* ``next``: the earliest time the next call may go. Every granted call pushes it on by ``interval``, so
  urgent calls queue one interval apart, and luxury calls find the lane busy while urgent ones are queued;
* ``interval``: adaptive. A refusal doubles it (once per refusal: refusals that arrive while the lane is
  already blocked do not double it again), up to ``cap``; while calls go through without a refusal it
  decays back towards ``base``, halving every ``half_life`` seconds. The first refusal sets it to at least
  ``floor``: ``base`` is tiny (nothing is spaced out before the platform refuses), the refused rate unknown;
* ``blocked``: until when the platform said to wait (``Retry-After``). No call of the lane goes before.

A scope is *quiet* while none of its lanes was refused lately: no block, every interval decayed back to
``base`` (at most :data:`QUIET_BASE`). The store's Redis lanes then have nothing to add to what this process
knows, so :class:`Pacer` spaces a quiet scope's calls ``base`` apart in lanes of its own (no round trip per
call; a burst's turns are still handed out ``base`` apart, and a refusal voids the turns handed out after it; a
call that first takes a channel's hold goes at its turn's time, or at once if the hold's round trip outlasted it).
Only a call that takes a channel's hold asks the shared lanes, for the hold alone, since the hold is what keeps a
second worker's call for that channel from going out before the first one's refusal is recorded. A refusal
makes the scope loud for every worker (the Redis lanes remember until when) until its lanes are quiet again;
its calls then take their turns from the shared lanes. The bound: a worker learns of another's refusal from its
next hold or refusal at once, else within the lanes' ``recheck`` (0.1 s plus a round trip for the store's), the
longest its calls that take no hold go on from its own lanes; its own refusal, and any it hears of, apply at once
to every method of the scope, and a turn of its own lanes that comes due in a scope gone loud is asked again.

Some platforms remember a refusal per channel rather than per message (Slack's ``chat.postMessage`` and
``chat.startStream``). A call of such a method takes the channel's *hold* while it is in flight, so no
second call for the same channel goes out before the first one's refusal is known and recorded.

:class:`LocalLanes` keeps lanes in this process (Discord's per-channel edit budget, Slack without Redis);
the store's Redis lanes (``runtime.pacer``) share them between all workers of a workspace, behind the
:class:`Lanes` protocol. :class:`Pacer` waits for turns and also remembers, in this process, every
``Retry-After`` it saw, so a call never goes early even when the shared lanes cannot be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("threadkeeper.pacing")

Clock = Callable[[], float]

NOTICE_EVERY = 60.0
"""At most one "being rate-limited" warning per scope in this many seconds."""
MIN_HINT = 0.01
"""The shortest "ask again in" a skipped luxury call is told."""
QUIET_BASE = 0.001
"""Lanes spacing calls at most this far apart when nothing is refused have nothing to say in a quiet scope."""


class Lanes(Protocol):
    """Where lanes live (this process, or Redis for every worker). Times are seconds, relative to now."""

    async def reserve(self, scope: str, method: str, *, urgent: bool, channel: str = "",
                      holder: str = "") -> tuple[bool, float]:
        """``(True, wait)``: a turn ``wait`` s from now is ours (and the channel's hold, when ``channel`` is
        given). ``(False, wait)``: none now; a luxury call is skipped, an urgent one asks again after ``wait``.
        """

    async def refused(self, scope: str, method: str, retry_after: float) -> bool:
        """The platform refused a call: block the lane for ``retry_after``, slow it down. True when this is
        the scope's first refusal in a minute (log the warning then)."""

    async def release(self, scope: str, method: str, channel: str, holder: str) -> None:
        """Give the channel's hold back (if it is still ``holder``'s)."""

    async def quiet(self, scope: str) -> bool:
        """Whether the scope's turns may be taken from this process's own lanes (see the module docstring):
        the lanes' ``base`` is at most :data:`QUIET_BASE` and no worker has seen the scope refused lately."""


@dataclass(frozen=True, slots=True)
class LaneSpec:
    base: float = 0.001
    """Spacing of calls in a lane that nothing refused lately (seconds): 1,000 a second, i.e. hardly any pacing
    until the platform refuses (20 ms before issue 19: it held a busy workspace to 50 answers a second)."""
    floor: float = 0.04
    """The least interval a refusal sets (then doubled by each refusal, up to ``cap``)."""
    cap: float = 8.0
    """The slowest the lane gets."""
    half_life: float = 5.0
    """Without a refusal the interval halves this often (never below ``base``)."""
    horizon: float = 0.1
    """Urgent turns are handed out at most this far ahead, so they follow the lane's latest state."""
    hold_ttl: float = 15.0
    """A channel's hold lapses after this (a worker that died holding it)."""
    poll: float = 0.05
    """How soon to ask again for a channel someone else holds."""



@dataclass
class _Lane:
    interval: float
    """As set by the last refusal, at ``since``; it decays from there."""
    since: float = 0.0
    next: float = 0.0
    blocked: float = 0.0
    holds: dict[str, tuple[str, float]] = field(default_factory=dict)
    """channel -> (holder, lapses at)."""


class LocalLanes:
    """Lanes of this process only (the same rules as the store's Redis lanes)."""

    def __init__(self, spec: LaneSpec | None = None, *, clock: Clock = time.monotonic) -> None:
        self.spec = spec or LaneSpec()
        self._clock = clock
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._notices: dict[str, float] = {}

    def _lane(self, scope: str, method: str) -> _Lane:
        lane = self._lanes.get((scope, method))
        if lane is None:
            if len(self._lanes) > 1000:
                self._prune()
            lane = self._lanes[(scope, method)] = _Lane(self.spec.base)
        return lane

    def _prune(self) -> None:
        idle = self._clock() - 10 * self.spec.cap
        for key in [k for k, lane in self._lanes.items() if max(lane.next, lane.blocked) < idle and not lane.holds]:
            del self._lanes[key]

    def interval(self, scope: str, method: str) -> float:
        """The lane's spacing of calls now."""
        return self._interval(self._lane(scope, method), self._clock())

    def _interval(self, lane: _Lane, now: float) -> float:
        decayed: float = lane.interval * 0.5 ** (max(0.0, now - lane.since) / self.spec.half_life)
        return max(self.spec.base, decayed)

    def reserve_now(self, scope: str, method: str, *, urgent: bool, channel: str = "",
                    holder: str = "") -> tuple[bool, float]:
        """:meth:`Lanes.reserve`, synchronously."""
        spec, lane, now = self.spec, self._lane(scope, method), self._clock()
        if channel:
            held = lane.holds.get(channel)
            if held is not None and held[0] != holder and held[1] > now:
                return False, max(0.001, min(held[1] - now, spec.poll))
        wait = max(now, lane.next, lane.blocked) - now
        if not urgent and wait > 0:
            return False, wait
        if urgent and wait > spec.horizon:
            return False, wait - spec.horizon
        lane.next = now + wait + self._interval(lane, now)
        if channel:
            lane.holds[channel] = (holder, now + wait + spec.hold_ttl)
        return True, wait

    def refused_now(self, scope: str, method: str, retry_after: float) -> bool:
        """:meth:`Lanes.refused`, synchronously."""
        spec, lane, now = self.spec, self._lane(scope, method), self._clock()
        if now >= lane.blocked:
            lane.interval, lane.since = min(spec.cap, max(spec.floor, self._interval(lane, now) * 2)), now
        lane.blocked = max(lane.blocked, now + retry_after)
        if self._notices.get(scope, -math.inf) > now:
            return False
        self._notices[scope] = now + NOTICE_EVERY
        return True

    def release_now(self, scope: str, method: str, channel: str, holder: str) -> None:
        lane = self._lane(scope, method)
        if lane.holds.get(channel, ("",))[0] == holder:
            del lane.holds[channel]

    async def quiet(self, scope: str) -> bool:
        """Never: lanes in this process cost nothing to ask."""
        return False

    async def reserve(self, scope: str, method: str, *, urgent: bool, channel: str = "",
                      holder: str = "") -> tuple[bool, float]:
        return self.reserve_now(scope, method, urgent=urgent, channel=channel, holder=holder)

    async def refused(self, scope: str, method: str, retry_after: float) -> bool:
        return self.refused_now(scope, method, retry_after)

    async def release(self, scope: str, method: str, channel: str, holder: str) -> None:
        self.release_now(scope, method, channel, holder)


class TooLate(Exception):
    """An urgent call's turn would come after its deadline."""

    def __init__(self, method: str, wait: float) -> None:
        super().__init__(f"{method}: next turn in {wait:.1f} s, after the deadline")
        self.method = method
        self.wait = wait


class Pacer:
    """Waits for turns in :class:`Lanes`, never before a ``Retry-After`` this process was told.

    If the lanes fail (Redis unreachable), calls go on paced by what this process saw alone.
    """

    def __init__(self, lanes: Lanes, *, poll: float = 0.05, clock: Clock = time.monotonic) -> None:
        self.lanes = lanes
        self.poll = poll
        self._clock = clock
        self._floor: dict[tuple[str, str], float] = {}
        self._locks: dict[tuple[str, str, str], tuple[asyncio.Lock, int]] = {}
        self._notices: dict[str, float] = {}
        self._lanes_failed_at = -math.inf
        self._own = LocalLanes(LaneSpec(base=QUIET_BASE), clock=clock)
        """This process's turns in quiet scopes."""

    def floor(self, scope: str, method: str) -> float:
        """Seconds until the latest ``Retry-After`` this process saw for the lane is over (0: none)."""
        until = self._floor.get((scope, method))
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._floor[(scope, method)]
            return 0.0
        return left

    async def turn(self, scope: str, method: str, *, urgent: bool, channel: str = "", holder: str = "",
                   deadline: float | None = None, soft: bool = False) -> float:
        """Wait for the call's turn; 0.0 when it may go now (holding ``channel`` if given).

        A luxury call never waits: without a free turn it gets back at once how many seconds to wait
        before asking again. An urgent call waits, and raises :class:`TooLate` as soon as its turn
        cannot come before ``deadline`` (on this pacer's clock). ``soft``: the deadline only decides whether
        to wait for a turn not yet granted; a granted one (at most the lanes' horizon ahead) is used, never
        thrown away (the lane has moved on past it).
        """
        while True:
            granted, wait, own = await self._ask(scope, method, urgent, channel, holder)
            floor = self.floor(scope, method)
            if not urgent:
                if granted and floor <= 0:
                    return 0.0
                if granted:
                    await self.release(scope, method, channel, holder)
                return max(wait, floor, MIN_HINT)
            if granted and floor <= wait:
                if not soft:
                    self._check(method, wait, deadline)
                if wait > 0:
                    await asyncio.sleep(wait)
                    if self.floor(scope, method) > 0 or (own and not await self._quiet(scope)):
                        continue  # refused meanwhile (a call of this process), or loud now: the turn is void
                return 0.0
            wait = max(wait, floor)
            self._check(method, wait, deadline)
            await asyncio.sleep(wait)

    def _check(self, method: str, wait: float, deadline: float | None) -> None:
        if deadline is not None and self._clock() + wait > deadline:
            raise TooLate(method, wait)

    async def refused(self, scope: str, method: str, retry_after: float) -> bool:
        """Record a refusal; True when it is the scope's first in a minute (log a warning then)."""
        key = (scope, method)
        self._floor[key] = max(self._floor.get(key, 0.0), self._clock() + retry_after)
        try:
            return await self.lanes.refused(scope, method, retry_after)
        except Exception as exc:  # the shared lanes are an optimisation: never lose the answer for them
            self._lanes_failed(exc)
            now = self._clock()
            if self._notices.get(scope, -math.inf) > now:
                return False
            self._notices[scope] = now + NOTICE_EVERY
            return True

    async def release(self, scope: str, method: str, channel: str, holder: str) -> None:
        if not channel:
            return
        try:
            await self.lanes.release(scope, method, channel, holder)
        except Exception as exc:
            self._lanes_failed(exc)

    async def _ask(self, scope: str, method: str, urgent: bool, channel: str,
                   holder: str) -> tuple[bool, float, bool]:
        """A turn from the shared lanes, or in a quiet scope from this process's own (the hold still shared); and
        whether it is this process's own (void if the scope is loud when it comes)."""
        if not await self._quiet(scope):
            return (*await self._reserve(scope, method, urgent, channel, holder), False)
        granted, wait = self._own.reserve_now(scope, method, urgent=urgent)
        if granted and channel:
            asked = self._clock()
            held, hold_wait = await self._reserve(scope, method, urgent, channel, holder)
            if not held:
                return False, hold_wait, False
            # The turn comes ``wait`` after it was handed out, and the hold's round trip used part of that or all: on
            # a busy loop a sleep the turn no longer needs costs a whole pass of the loop (a 300-stream burst's first
            # texts waited tens of ms more). When the hold's reply found the scope loud, it was the shared lane's
            # turn, and its wait counts too.
            left = wait - (self._clock() - asked)
            return True, max(left, hold_wait, 0.0), await self._quiet(scope)
        return granted, wait, True

    async def _quiet(self, scope: str) -> bool:
        try:
            return await self.lanes.quiet(scope)
        except Exception as exc:
            self._lanes_failed(exc)
            return False  # then _reserve fails alike, and this process's own view (the floor) paces

    async def _reserve(self, scope: str, method: str, urgent: bool, channel: str,
                       holder: str) -> tuple[bool, float]:
        try:
            return await self.lanes.reserve(scope, method, urgent=urgent, channel=channel, holder=holder)
        except Exception as exc:
            self._lanes_failed(exc)
            return True, 0.0

    def _lanes_failed(self, exc: Exception) -> None:
        now = self._clock()
        if now - self._lanes_failed_at >= NOTICE_EVERY:
            self._lanes_failed_at = now
            log.warning("shared rate-limit pacing is unavailable (%s); pacing with this process's view only", exc)

    # ---- one call per channel at a time, in this process ------------------------------------------
    def channel_busy(self, scope: str, method: str, channel: str) -> bool:
        entry = self._locks.get((scope, method, channel))
        return entry is not None and entry[0].locked()

    @contextlib.asynccontextmanager
    async def channel_lock(self, scope: str, method: str, channel: str) -> AsyncIterator[None]:
        """Tasks of this process take turns per channel here, so only one of them asks the lanes."""
        if not channel:
            yield
            return
        key = (scope, method, channel)
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
