"""Discord edits under Discord's rate limits: one edit budget per channel, shared by every answer in it.

discord.py stays in charge of Discord's limits: it reads the ``X-RateLimit-*`` headers, waits when a
bucket is spent and retries a 429 after its ``retry_after``. What it cannot know is which edits matter.
Discord allows about 5 message edits per 5 s *per channel*, so many answers streaming into one busy
channel share that budget; :class:`ChannelEdits` keeps one lane per channel in this process
(:class:`~adapters.kit.pacing.LocalLanes`, a turn every :data:`EDIT_SPEC` ``base`` seconds):

* a streamed edit (a luxury) goes only when the channel's lane is free, else it is skipped and its text
  goes with the next one;
* a final edit always goes: it takes the lane's next turn, so the streamed edits give way to it, and the
  channel's finals go one at a time (the next once the previous one is answered), so the finals of many
  answers reach discord.py one by one instead of in a burst it would have to sort out with 429s. It does
  not wait for the lane's turn: discord.py paces it by the channel bucket's ``X-RateLimit-*`` headers,
  which say what Discord allows. Waiting for the turn as well queued every answer's final edit (the
  feedback buttons under each answer) a second behind the previous one's, however little Discord asked:
  in a channel answered faster than once a second the queue only grew, and an answer whose text was
  completed by its final edit waited behind all of it (15-32 s at the front-door bench's one-user level,
  40 answers in a row). A final edit also waits until a ``Retry-After`` Discord gave for the channel's
  edits is over; it never waits past the answer's deadline.

The 429s discord.py handles reach us only through its log (``discord.http``: "We are being rate
limited..."): a filter on that logger counts them (``threadkeeper_platform_refused_total``), slows the
channel's lane, marks the answer whose call it was, and warns once per server per minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import yarl

from adapters.kit.pacing import NOTICE_EVERY, LaneSpec, LocalLanes
from bot.metrics import Metrics

log = logging.getLogger("threadkeeper.discord")

EDIT = "edit"
EDIT_SPEC = LaneSpec(base=1.0, cap=10.0, half_life=10.0, horizon=math.inf)
"""Discord's 5 edits per 5 s per channel, spread out; every final edit gets a turn however far ahead."""

DELIVER_WITHIN = 120.0
"""How long a final edit or send keeps being retried after Discord refused it."""

RATE_LIMITED = "We are being rate limited."
"""How discord.py's ``discord.http`` log line about a 429 it will retry begins."""

_CHANNEL = re.compile(r"/channels/(\d+)")
_TOKENS = re.compile(r"(/(?:webhooks|interactions)/\{id\})/[^/]+")


@dataclass(eq=False)
class Delivery:
    """One answer's calls: its deadline (set when the final text is ready) and how many were refused."""

    digest: str
    deadline: float | None = None
    refused: int = 0
    owner: object = None
    """The :class:`ChannelEdits` whose answer this is (several adapters may share one process's log)."""

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


_ANSWER: ContextVar[Delivery | None] = ContextVar("threadkeeper_discord_answer", default=None)


def route_of(method: str, url: str) -> str:
    """``PATCH /channels/{id}/messages/{id}``: a metric label without ids or tokens."""
    path = re.sub(r"^/api/v\d+", "", yarl.URL(url).path)
    return f"{method} " + _TOKENS.sub(r"\1/{token}", re.sub(r"/\d+", "/{id}", path))


class ChannelEdits:
    """The edit lane of every channel this adapter writes to, and what Discord's 429s tell about them."""

    def __init__(
        self,
        *,
        metrics: Metrics | None = None,
        lanes: LocalLanes | None = None,
        deliver_within: float = DELIVER_WITHIN,
        server_of: Callable[[int], str | None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.lanes = lanes or LocalLanes(EDIT_SPEC)
        self.deliver_within = deliver_within
        self._server_of = server_of
        self._notices: dict[str, float] = {}
        self._blocked: dict[str, float] = {}
        """Per channel scope: until when (``time.monotonic``) Discord said to wait before the next edit."""
        self._finals: dict[str, tuple[asyncio.Lock, int]] = {}
        """Per channel scope: the lock its final edits take turns on, and how many hold or wait for it."""
        self._filter = _RefusalFilter(self)

    @staticmethod
    def scope(channel_id: int | str) -> str:
        return f"discord:{channel_id}"

    def luxury(self, channel_id: int | str) -> float:
        """0.0: a streamed edit may go now; else skip it and ask again after that many seconds."""
        granted, wait = self.lanes.reserve_now(self.scope(channel_id), EDIT, urgent=False)
        return 0.0 if granted else max(wait, 0.01)

    @contextlib.asynccontextmanager
    async def urgent(self, channel_id: int | str, delivery: Delivery) -> AsyncIterator[None]:
        """Around a final edit: take the channel's next turn (streamed edits give way) without waiting for it;
        wait for the channel's final edit in flight, if any, and for a ``Retry-After`` Discord gave for the
        channel's edits, both at most until the answer's deadline."""
        scope = self.scope(channel_id)
        self.lanes.reserve_now(scope, EDIT, urgent=True)
        lock, users = self._finals.get(scope) or (asyncio.Lock(), 0)
        self._finals[scope] = (lock, users + 1)
        held = False
        try:
            try:
                async with asyncio.timeout_at(self._deadline_at(delivery)):
                    await lock.acquire()
                    held = True
            except TimeoutError:
                pass  # past the deadline: the edit goes without its turn
            wait = self.blocked(channel_id)
            if delivery.deadline is not None:
                wait = min(wait, delivery.deadline - time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)
            yield
        finally:
            if held:
                lock.release()
            lock, users = self._finals[scope]
            if users <= 1:
                del self._finals[scope]
            else:
                self._finals[scope] = (lock, users - 1)

    @staticmethod
    def _deadline_at(delivery: Delivery) -> float | None:
        """The answer's deadline on the event loop's clock (``asyncio.timeout_at``), None: none."""
        if delivery.deadline is None:
            return None
        return asyncio.get_running_loop().time() + (delivery.deadline - time.monotonic())

    def blocked(self, channel_id: int | str) -> float:
        """Seconds until the latest ``Retry-After`` Discord gave for the channel's edits is over (0: none)."""
        scope = self.scope(channel_id)
        until = self._blocked.get(scope)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self._blocked[scope]
            return 0.0
        return left

    def delivery(self, digest: str) -> Delivery:
        return Delivery(digest, owner=self)

    def start_deadline(self, delivery: Delivery) -> None:
        if delivery.deadline is None:
            delivery.deadline = time.monotonic() + self.deliver_within

    @contextlib.contextmanager
    def answering(self, delivery: Delivery) -> Iterator[None]:
        """Calls made inside belong to ``delivery`` (for the 429s discord.py logs)."""
        token = _ANSWER.set(delivery)
        try:
            yield
        finally:
            _ANSWER.reset(token)

    def late(self, delivery: Delivery) -> None:
        """The answer got through: count it as late if Discord refused one of its calls."""
        if delivery.refused and self.metrics is not None:
            self.metrics.answers_late.labels("discord").inc()

    # ---- Discord's 429s, as discord.py logs them ----------------------------------------------------------
    def watch(self) -> None:
        """Start reading discord.py's 429 log lines (idempotent)."""
        logger = logging.getLogger("discord.http")
        if self._filter not in logger.filters:
            logger.addFilter(self._filter)

    def unwatch(self) -> None:
        logging.getLogger("discord.http").removeFilter(self._filter)

    def refused(self, method: str, url: str, retry_after: float) -> None:
        """discord.py got a 429 for ``method url`` and will retry after ``retry_after`` seconds."""
        delivery = _ANSWER.get()
        if delivery is not None and delivery.owner is not self:
            return  # another adapter's answer: its own filter counts it
        route = route_of(method, url)
        if self.metrics is not None:
            self.metrics.platform_refused.labels("discord", route).inc()
        if delivery is not None:
            delivery.refused += 1
        found = _CHANNEL.search(yarl.URL(url).path)
        if found is None:
            return
        if method == "PATCH" and "/messages/" in url:
            scope = self.scope(found[1])
            self.lanes.refused_now(scope, EDIT, retry_after)
            self._blocked[scope] = max(self._blocked.get(scope, 0.0), time.monotonic() + retry_after)
        server = (self._server_of(int(found[1])) if self._server_of else None) or f"channel {found[1]}"
        now = time.monotonic()
        if self._notices.get(server, -math.inf) <= now:
            self._notices[server] = now + NOTICE_EVERY
            log.warning("Discord is rate-limiting us in %s (%s, retry after %.2f s): fewer streamed edits there "
                        "for now (this line at most once a minute)", server, route, retry_after)


class _RefusalFilter(logging.Filter):
    def __init__(self, edits: ChannelEdits) -> None:
        super().__init__("discord.http")
        self.edits = edits

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(record.msg, str) and record.msg.startswith(RATE_LIMITED) and "Retrying" in record.msg \
                and isinstance(args, tuple) and len(args) == 3:
            method, url, retry_after = args
            try:
                self.edits.refused(str(method), str(url), float(retry_after))  # type: ignore[arg-type]
            except Exception:  # never break discord.py's logging
                log.debug("could not read a rate-limit log line", exc_info=True)
        return True
