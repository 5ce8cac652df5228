"""Slack calls under Slack's rate limits: paced per workspace, retried after ``Retry-After``, never doubled.

Every call an answer makes goes through :class:`SlackCalls`, as *urgent* (the final text, a part of a
long answer, an error sentence) or as a *luxury* (an intermediate edit or stream append); see
:mod:`adapters.kit.pacing` for the lanes that decide which goes when. Refusals (HTTP 429,
``Retry-After``, ``{"error": "ratelimited"}``) are handled inside slack_sdk's retry loop, by
:class:`PacedRateLimitRetry` on the ``AsyncWebClient`` and on the ``response_url`` webhook client:

* every refusal is recorded in the workspace's lane (blocked until ``Retry-After``, interval doubled),
  counted in ``threadkeeper_platform_refused_total{platform="slack", method}``, and warned about once per
  workspace per minute;
* an urgent call waits for its next turn (never before ``Retry-After``) and tries again, until its
  delivery's deadline; a luxury call is not retried: its text goes with the next one.

A call whose outcome is unknown (a connection dropped, a timeout) is retried only when repeating it
cannot show anything twice: slack_sdk's connection-error retry is kept for every method except the
ones that create or append (:data:`POSTING`).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.kit.pacing import MIN_HINT, Pacer, TooLate
from bot.metrics import Metrics

log = logging.getLogger("threadkeeper.slack")

T = TypeVar("T")

DELIVER_WITHIN = 120.0
"""How long an answer's final text may take to get through Slack's rate limits before we give up (loudly)."""

POSTING = frozenset({"chat.postMessage", "chat.postEphemeral", "chat.startStream", "chat.appendStream",
                     "chat.stopStream", "chat.scheduleMessage", "chat.meMessage", "response_url"})
"""Calls that create or append: after a dropped connection their outcome is unknown, so never retried blindly."""

PER_CHANNEL = frozenset({"chat.postMessage", "chat.postEphemeral", "chat.startStream", "chat.scheduleMessage",
                         "assistant.threads.setStatus"})
"""Methods not aimed at one message: a call takes the channel's hold while in flight (see ``adapters.kit.pacing``)."""

RESPONSE_URL = "response_url"
"""The lane of ``response_url`` posts (slash command replies)."""


class Undelivered(Exception):
    """An urgent call did not get through: its deadline passed under refusals, or its outcome is unknown."""


def outcome_unknown(exc: BaseException) -> bool:
    """Whether a failed call may still have reached Slack (a timeout, a dropped connection)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return False  # never connected: nothing was sent
    return isinstance(exc, aiohttp.ClientError | TimeoutError)


def ratelimited(exc: BaseException) -> bool:
    return isinstance(exc, SlackApiError) and isinstance(exc.response.data, dict) and \
        exc.response.data.get("error") == "ratelimited"


@dataclass(eq=False)
class Delivery:
    """The calls of one answer (or one reply): its workspace, its deadline, whether Slack refused one."""

    team: str
    digest: str
    deadline: float | None = None
    """On :func:`time.monotonic`; urgent calls give up when their turn would come later."""
    refused: int = 0
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True, slots=True)
class _Call:
    delivery: Delivery
    method: str
    urgent: bool
    channel: str = ""


_CURRENT: ContextVar[_Call | None] = ContextVar("threadkeeper_slack_call", default=None)
"""The call in progress in this task, for the retry handler inside slack_sdk's request loop."""


def method_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _retry_after(response: HttpResponse) -> float:
    for name, values in response.headers.items():
        if name.lower() == "retry-after" and values:
            try:
                return max(1.0, float(values[0]))
            except ValueError:
                break
    return 1.0


class SlackCalls:
    """Paced, retried Slack calls for one adapter (one bot token, so one workspace by default)."""

    def __init__(self, pacer: Pacer, *, metrics: Metrics | None = None, team: str = "unknown",
                 deliver_within: float = DELIVER_WITHIN) -> None:
        self.pacer = pacer
        self.metrics = metrics
        self.team = team
        """The bot's workspace (``auth.test``), for calls made outside an answer."""
        self.deliver_within = deliver_within

    @staticmethod
    def scope(team: str) -> str:
        """A workspace's lanes, named by a digest of it: no Redis key names a team (nothing stays of one that
        uninstalled the app)."""
        return f"slack:{hashlib.sha256(team.encode()).hexdigest()[:16]}"

    def delivery(self, team: str, digest: str) -> Delivery:
        """A delivery whose urgent calls must get through within :attr:`deliver_within` from now."""
        return Delivery(team, digest, time.monotonic() + self.deliver_within)

    def install(self, client: AsyncWebClient) -> None:
        """slack_sdk's retry handlers, as this module wants them (see the module docstring)."""
        client.retry_handlers[:] = [NoRepostConnectionRetry(), PacedRateLimitRetry(self)]

    def webhook(self, url: str) -> AsyncWebhookClient:
        """A ``response_url`` client whose refusals are paced like the Web API's (Bolt's ``respond`` has none)."""
        return AsyncWebhookClient(url, retry_handlers=[PacedRateLimitRetry(self, method=RESPONSE_URL)])

    # ---- calls -----------------------------------------------------------------------------------
    async def urgent(self, delivery: Delivery, method: str, call: Callable[[], Awaitable[T]], *,
                     channel: str = "") -> T:
        """Make ``call`` when its turn comes, retried after refusals; :class:`Undelivered` past the deadline."""
        scope = self.scope(delivery.team)
        channel = channel if method in PER_CHANNEL else ""
        async with self.pacer.channel_lock(scope, method, channel):
            try:
                await self.pacer.turn(scope, method, urgent=True, channel=channel, holder=delivery.holder,
                                      deadline=delivery.deadline)
                token = _CURRENT.set(_Call(delivery, method, True, channel))
                try:
                    return await call()
                finally:
                    _CURRENT.reset(token)
            except TooLate as exc:
                raise Undelivered(f"{method} still refused at the deadline ({exc})") from None
            except SlackApiError as exc:
                if ratelimited(exc):
                    raise Undelivered(f"{method} still refused at the deadline") from None
                raise
            finally:
                await self.pacer.release(scope, method, channel, delivery.holder)

    async def luxury(self, delivery: Delivery, method: str, call: Callable[[], Awaitable[T]], *,
                     channel: str = "", wait: float = 0.0) -> tuple[T | None, float]:
        """``(result, 0.0)``, or ``(None, seconds)`` when the lane had no turn free or Slack refused: skipped.

        ``wait``: take the lane's next turn if it comes within about that many seconds, in line with the other
        calls waiting for theirs (an answer's first text: when many answers start at once, each waits its turn
        instead of asking again and again for a free one); skipped only when the turn is further off. A turn once
        granted is used, even a little past ``wait`` (at most the lanes' horizon): never granted and then lost."""
        scope = self.scope(delivery.team)
        channel = channel if method in PER_CHANNEL else ""
        if channel and self.pacer.channel_busy(scope, method, channel):
            return None, self.pacer.poll
        async with self.pacer.channel_lock(scope, method, channel):
            if wait <= 0 and (later := await self.pacer.turn(scope, method, urgent=False, channel=channel,
                                                             holder=delivery.holder)) > 0:
                return None, later  # no turn, so no hold taken
            try:
                if wait > 0:
                    await self.pacer.turn(scope, method, urgent=True, channel=channel, holder=delivery.holder,
                                          deadline=time.monotonic() + wait, soft=True)
                token = _CURRENT.set(_Call(delivery, method, False, channel))
                try:
                    return await call(), 0.0
                finally:
                    _CURRENT.reset(token)
            except TooLate as exc:
                return None, max(exc.wait, MIN_HINT)
            except SlackApiError as exc:
                if ratelimited(exc):
                    return None, max(self.pacer.floor(scope, method), self.pacer.poll)
                raise
            finally:
                await self.pacer.release(scope, method, channel, delivery.holder)

    # ---- from inside slack_sdk's retry loop ------------------------------------------------------------
    async def on_refusal(self, call: _Call, retry_after: float) -> bool:
        """Record a refusal; whether the call should be tried again (urgent, and the deadline allows it)."""
        delivery = call.delivery
        delivery.refused += 1
        if self.metrics is not None:
            self.metrics.platform_refused.labels("slack", call.method).inc()
        if await self.pacer.refused(self.scope(delivery.team), call.method, retry_after):
            log.warning("Slack is rate-limiting workspace %s (%s refused, Retry-After %.0f s): pacing its calls, "
                        "skipping intermediate edits (this line at most once a minute)",
                        delivery.team, call.method, retry_after)
        if not call.urgent:
            return False
        return delivery.deadline is None or time.monotonic() + retry_after <= delivery.deadline

    async def before_retry(self, call: _Call) -> bool:
        """Wait for the call's next turn; False when it cannot come before the deadline."""
        delivery = call.delivery
        try:
            await self.pacer.turn(self.scope(delivery.team), call.method, urgent=True, channel=call.channel,
                                  holder=delivery.holder, deadline=delivery.deadline)
        except TooLate:
            return False
        return True

    def current(self, method: str, state: RetryState) -> _Call:
        """The call being retried: the one an answer is making, else one of this adapter's own."""
        call = _CURRENT.get()
        if call is not None:
            return call
        values = state.custom_values if state.custom_values is not None else {}
        state.custom_values = values
        made = values.get("call")
        if not isinstance(made, _Call):
            made = values["call"] = _Call(self.delivery(self.team, "-"), method, True)
        return made


class PacedRateLimitRetry(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's retry after HTTP 429, waiting for the workspace's lane instead of only ``Retry-After``."""

    def __init__(self, calls: SlackCalls, *, method: str | None = None) -> None:
        super().__init__(max_retry_count=1000)  # the delivery's deadline is the limit
        self.calls = calls
        self.method = method

    async def _can_retry_async(self, *, state: RetryState, request: HttpRequest,
                               response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        if response is None or response.status_code != 429:
            return False
        call = self.calls.current(self.method or method_of(request.url), state)
        return await self.calls.on_refusal(call, _retry_after(response))

    async def prepare_for_next_attempt_async(self, *, state: RetryState, request: HttpRequest,
                                             response: HttpResponse | None = None,
                                             error: Exception | None = None) -> None:
        call = self.calls.current(self.method or method_of(request.url), state)
        if await self.calls.before_retry(call):
            state.next_attempt_requested = True
            state.increment_current_attempt()


class NoRepostConnectionRetry(AsyncConnectionErrorRetryHandler):
    """slack_sdk's default retry after a dropped connection, except for calls that create or append."""

    async def _can_retry_async(self, *, state: RetryState, request: HttpRequest,
                               response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        if method_of(request.url) in POSTING:
            return False
        return await super()._can_retry_async(state=state, request=request, response=response, error=error)


__all__ = ["DELIVER_WITHIN", "Delivery", "SlackCalls", "Undelivered", "outcome_unknown", "ratelimited"]


SEND_ERRORS: tuple[type[BaseException], ...] = (SlackClientError, aiohttp.ClientError, TimeoutError)
"""What a Slack call may raise that must not lose the rest of the reply."""
DELIVERY_ERRORS: tuple[type[BaseException], ...] = (Undelivered, *SEND_ERRORS)
"""What a paced Slack call may end in: a final text's failure (logged as an ERROR with the thread's digest), a
hint's (logged and forgotten)."""
TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                              "request_timeout"})
"""Errors that say nothing about whether the workspace supports a method (streams, channel statuses)."""


class Unsupported:
    """Teams whose workspace refused ``what`` for good (in memory: a restart asks again)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._off: set[str] = set()

    def enabled(self, team: str) -> bool:
        return team not in self._off

    def refused(self, team: str, error: str) -> None:
        """Slack refused ``what`` with ``error``: remembered for the team unless the error is transient."""
        if error in TRANSIENT_ERRORS:
            log.info("%s failed transiently in team %s (%s)", self.what, team, error)
        elif team not in self._off:
            log.info("no %s in team %s (%s)", self.what, team, error)
            self._off.add(team)


async def answer_privately(calls: SlackCalls, client: AsyncWebClient, text: str, *, team: str, channel: str,
                           user: str, response_url: str | None, kind: str, failed: str, replace: bool = False,
                           level: int = logging.WARNING) -> None:
    """``user`` alone sees ``text``: through ``response_url`` (the message it came from replaced by it if
    ``replace``), else ``chat.postEphemeral`` in ``channel`` with the token of their workspace (``client``); paced
    as ``kind``. A failure is logged at ``level`` as ``failed: …``."""
    delivery = calls.delivery(team or calls.team, kind)
    try:
        if response_url:
            webhook = calls.webhook(response_url)
            sent = await calls.urgent(delivery, RESPONSE_URL, lambda: webhook.send(
                text=text, response_type="ephemeral", replace_original=replace))
            if sent.status_code != 200:
                log.log(level, "%s: response_url answered %d %s", failed, sent.status_code, sent.body)
            return
        await calls.urgent(delivery, "chat.postEphemeral", lambda: client.chat_postEphemeral(
            channel=channel, user=user, text=text), channel=channel)
    except DELIVERY_ERRORS as exc:
        log.log(level, "%s: %s", failed, exc)


async def answer_clicker(calls: SlackCalls, body: dict[str, Any], text: str, client: AsyncWebClient, *,
                         kind: str, replace: bool, failed: str) -> None:
    """The clicker of a button (``body``: the ``block_actions`` payload) alone sees ``text``
    (:func:`answer_privately`)."""
    container = body.get("container") or {}
    await answer_privately(
        calls, client, text, team=str((body.get("team") or {}).get("id") or ""),
        channel=str(container.get("channel_id") or (body.get("channel") or {}).get("id") or ""),
        user=str((body.get("user") or {}).get("id") or ""), response_url=str(body.get("response_url") or ""),
        kind=kind, failed=failed, replace=replace)
