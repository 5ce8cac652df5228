"""Rate limits as Slack and Discord apply them, for the loopback fakes (off until a test installs one).

Slack (https://docs.slack.dev/apis/web-api/rate-limits): each Web API method has a per-workspace budget and
``chat.postMessage`` also about one message a second per channel, with short bursts allowed. A refused call
answers HTTP 429, ``Retry-After: <whole seconds>`` and ``{"ok": false, "error": "ratelimited"}`` and has no
effect. Modelled as token buckets (``burst`` calls at once, refilled at ``per_second``).

Discord (https://discord.com/developers/docs/topics/rate-limits): a route's bucket allows ``limit`` requests
until it resets ``reset_after`` seconds later; every answer carries ``X-RateLimit-*`` headers and a 429 names
``retry_after`` in its body. Modelled as a fixed window opened by the first request, which is what the headers
describe, so discord.py's own bookkeeping (``discord/http.py`` ``Ratelimit``) stays in step with the fake.

Both fakes remember each refusal by key (method, channel[, message]) and flag any call for the same key that
arrives before the refusal's retry-after has elapsed: :meth:`RetryWatch.early`.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], float]
Key = tuple[str, ...]


class TokenBucket:
    """``burst`` calls at once, refilled at ``per_second`` calls a second."""

    def __init__(self, per_second: float, burst: int, now: float) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("per_second must be > 0 and burst >= 1")
        self.rate = float(per_second)
        self.burst = int(burst)
        self.tokens = float(burst)
        self.stamp = now

    def wait(self, now: float) -> float:
        """Seconds until one call is allowed (0: allowed now)."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


class FixedWindow:
    """``limit`` requests per ``per`` seconds; the window opens with the first request after the last one closed."""

    def __init__(self, limit: int, per: float) -> None:
        if limit < 1 or per <= 0:
            raise ValueError("limit must be >= 1 and per > 0")
        self.limit = int(limit)
        self.per = float(per)
        self.used = 0
        self.resets_at = -math.inf

    def take(self, now: float) -> bool:
        if now >= self.resets_at:
            self.used, self.resets_at = 0, now + self.per
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    @property
    def remaining(self) -> int:
        return self.limit - self.used

    def reset_after(self, now: float) -> float:
        """Rounded up to the millisecond like Discord's, so a client never comes back before the reset."""
        return max(0.001, math.ceil((self.resets_at - now) * 1000) / 1000)


@dataclass
class Refusal:
    method: str
    key: Key
    """(method, channel) or (method, channel, message ts/id) for calls aimed at one message."""
    at: float
    retry_after: float
    """As the client was told: Slack's whole seconds, Discord's body ``retry_after``."""

    @property
    def until(self) -> float:
        return self.at + self.retry_after


@dataclass
class RetryWatch:
    """Every refusal, the latest per key, and the calls that came back for a key before they were allowed to."""

    tolerance: float = 0.001
    refused: list[Refusal] = field(default_factory=list)
    early: list[Any] = field(default_factory=list)
    last: dict[Key, Refusal] = field(default_factory=dict)

    def arrived(self, key: Key, at: float, call: Any) -> bool:
        previous = self.last.get(key)
        if previous is not None and at < previous.until - self.tolerance:
            self.early.append(call)
            return True
        return False

    def refuse(self, key: Key, at: float, retry_after: float) -> Refusal:
        refusal = Refusal(key[0], key, at, retry_after)
        self.refused.append(refusal)
        previous = self.last.get(key)
        if previous is None or refusal.until >= previous.until:
            self.last[key] = refusal
        return refusal


# ---- Slack -------------------------------------------------------------------------------------------
SLACK_AIMED = frozenset({"chat.update", "chat.appendStream", "chat.stopStream", "chat.delete"})
"""Methods aimed at one existing message: their refusals are remembered per (method, channel, ts)."""


class SlackLimits:
    """Token buckets per (team, method) and per (team, method, channel), installed by the tests."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.watch = RetryWatch()
        self._method: dict[str, tuple[float, int]] = {}
        self._channel: dict[str, tuple[float, int]] = {}
        self._buckets: dict[Key, TokenBucket] = {}

    def per_method(self, method: str, per_second: float, burst: int) -> None:
        TokenBucket(per_second, burst, 0.0)  # validates
        self._method[method] = (per_second, burst)
        self._drop(lambda k: len(k) == 2 and k[1] == method)

    def per_channel(self, method: str, per_second: float, burst: int) -> None:
        TokenBucket(per_second, burst, 0.0)
        self._channel[method] = (per_second, burst)
        self._drop(lambda k: len(k) == 3 and k[1] == method)

    def _drop(self, which: Callable[[Key], bool]) -> None:
        for key in [k for k in self._buckets if which(k)]:
            del self._buckets[key]

    @staticmethod
    def key(method: str, channel: str, ts: str | None) -> Key:
        return (method, channel, ts or "") if method in SLACK_AIMED else (method, channel)

    def admit(self, call: Any, *, team: str, method: str, channel: str, ts: str | None, now: float) -> int | None:
        """``None`` when the call may go on, else the ``Retry-After`` (whole seconds, at least 1) to answer."""
        key = self.key(method, channel, ts)
        self.watch.arrived(key, now, call)
        buckets = []
        if method in self._method:
            buckets.append(self._bucket((team, method), self._method[method], now))
        if method in self._channel:
            buckets.append(self._bucket((team, method, channel), self._channel[method], now))
        wait = max((b.wait(now) for b in buckets), default=0.0)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            self.watch.refuse(key, now, retry_after)
            return retry_after
        for bucket in buckets:
            bucket.take()
        return None

    def _bucket(self, key: Key, spec: tuple[float, int], now: float) -> TokenBucket:
        if key not in self._buckets:
            self._buckets[key] = TokenBucket(spec[0], spec[1], now)
        return self._buckets[key]


# ---- Discord -----------------------------------------------------------------------------------------
DISCORD_ROUTES: dict[str, tuple[str, re.Pattern[str]]] = {
    "edit": ("PATCH", re.compile(r"/channels/(\d+)/messages/(\d+)")),
    "post": ("POST", re.compile(r"/channels/(\d+)/messages")),
}
"""Per-channel buckets (the channel id is the route's major parameter, as in discord.py's ``Route``)."""


@dataclass
class DiscordVerdict:
    headers: dict[str, str]
    refusal: Refusal | None = None

    def body(self) -> dict[str, Any]:
        assert self.refusal is not None
        return {"message": "You are being rate limited.", "retry_after": self.refusal.retry_after, "global": False}


class DiscordLimits:
    def __init__(self, clock: Clock, wall: Clock = time.time) -> None:
        self.clock = clock
        self.wall = wall
        self.watch = RetryWatch()
        self._specs: dict[str, tuple[int, float]] = {}
        self._windows: dict[Key, FixedWindow] = {}

    def set(self, route: str, limit: int, per: float) -> None:
        FixedWindow(limit, per)  # validates
        self._specs[route] = (limit, per)
        for key in [k for k in self._windows if k[0] == route]:
            del self._windows[key]

    def check(self, method: str, path: str, call: Any, now: float) -> DiscordVerdict | None:
        """``None`` for routes without a limit; else the headers to send and, over the limit, the refusal."""
        for route, (verb, rx) in DISCORD_ROUTES.items():
            match = rx.fullmatch(path)
            if verb == method and match and route in self._specs:
                return self._verdict(route, method, match.groups(), call, now)
        return None

    def _verdict(self, route: str, method: str, ids: tuple[str, ...], call: Any, now: float) -> DiscordVerdict:
        key: Key = (method, *ids)
        self.watch.arrived(key, now, call)
        window = self._windows.setdefault((route, ids[0]), FixedWindow(*self._specs[route]))
        allowed = window.take(now)
        reset_after = window.reset_after(now)
        headers = {
            "X-RateLimit-Limit": str(window.limit),
            "X-RateLimit-Remaining": str(window.remaining),
            "X-RateLimit-Reset": f"{self.wall() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": hashlib.md5(f"fake:{route}".encode()).hexdigest(),
            "Via": "1.1 google",  # discord.py takes a 429 without it for a Cloudflare ban
        }
        if allowed:
            return DiscordVerdict(headers)
        headers.update({"Retry-After": str(max(1, math.ceil(reset_after))), "X-RateLimit-Scope": "user"})
        return DiscordVerdict(headers, self.watch.refuse(key, now, reset_after))
