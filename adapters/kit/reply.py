"""One answer on its way to a user: the renderer protocol every platform implements, and its pump.

:func:`deliver` is the one sequence every adapter runs: :meth:`Reply.begin`, the core's
:meth:`~bot.core.Core.handle` streaming into :meth:`Reply.on_delta` (and tool progress into
:meth:`Reply.on_status`), then exactly one of
:meth:`Reply.finish` (the answer), :meth:`Reply.fail` (one sentence for the user) or
:meth:`Reply.discard` (nothing to say: a duplicate delivery, a message not meant for the bot), and
:meth:`Reply.close` whatever happened.

Deltas never wait for the platform: a reply only buffers them and wakes its :class:`Pump`, which
renders what has accumulated at most once per interval (platforms rate-limit edits). Those renders
are a luxury: under a rate limit a flush may skip its edit and say when to try again
(:mod:`adapters.kit.pacing`); the final text never waits behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Protocol

from adapters.kit.texts import user_sentence
from bot.core import Core
from bot.domain import Incoming


class Reply(Protocol):
    """How one platform shows one answer while it streams in."""

    async def begin(self) -> None:
        """Before the core starts: show that the bot is working (typing, a status)."""

    async def on_delta(self, delta: str) -> None:
        """A streamed piece of the answer; must not wait for the platform."""

    async def on_status(self, status: str) -> None:
        """What the assistant is doing ("searching the web…"), until the answer says more; must not wait."""

    async def finish(self, text: str) -> None:
        """The complete answer, which wins over whatever the deltas showed."""

    async def fail(self, sentence: str) -> None:
        """The core failed: show this one sentence; what already streamed may stay."""

    async def discard(self) -> None:
        """The core has nothing to say after all."""

    async def close(self) -> None:
        """Always last: stop background work (the pump, a typing indicator, a status)."""


async def deliver(core: Core, incoming: Incoming, reply: Reply, log: logging.Logger) -> None:
    """Answer ``incoming`` through ``reply``; the core's errors become the user's one sentence.

    Errors of the platform itself (a send that fails in :meth:`Reply.finish`) propagate: only the
    adapter knows which ones it expects.
    """
    try:
        await reply.begin()
        try:
            answer = await core.handle(incoming, reply.on_delta, reply.on_status)
        except Exception as exc:
            await reply.fail(user_sentence(exc, log, f"answering {incoming.key.digest}"))
            return
        if answer is None:
            await reply.discard()
        else:
            await reply.finish(answer.text)
    finally:
        await reply.close()


class Pump:
    """Calls ``flush`` when woken, at most once per ``interval``, in a task of its own.

    The first :meth:`wake` starts the task, which flushes at once; later wakes are folded into one
    flush after the interval, counted from the *end* of the last request so two never reach the
    platform closer than that. A flush that returns a number skipped its work (the platform's budget
    is spent, or its turn is a little way off) and made no request: the pump flushes again after that many
    seconds (at least the interval), woken or not. Until a flush has gone through, the first text of an
    answer is not held back a whole interval because its lane was busy for a few milliseconds: it asks
    again after the hint, backing off towards the interval, with jitter (:meth:`_first_retry`).
    ``errors`` from a flush are logged and the pump goes on; anything else ends it and is raised by
    :meth:`stop`.
    """

    def __init__(
        self,
        flush: Callable[[], Awaitable[float | None]],
        *,
        interval: float,
        errors: tuple[type[BaseException], ...],
        log: logging.Logger,
        name: str = "reply-pump",
    ) -> None:
        self._flush = flush
        self._interval = interval
        self._errors = errors
        self._log = log
        self._name = name
        self._dirty = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """There is something new to show; a no-op once stopped."""
        if self._stopping.is_set():
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)
        self._dirty.set()

    async def stop(self, within: float = 30.0) -> None:
        """Let the flush in progress finish (so no message is half-known), then stop. Idempotent.

        A flush still running after ``within`` seconds is cancelled.
        """
        self._stopping.set()
        self._dirty.set()
        if self._task is None:
            return
        task, self._task = self._task, None
        try:
            async with asyncio.timeout(within):  # no task of its own, unlike wait_for before Python 3.12
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
        except asyncio.CancelledError:
            task.cancel()
            raise

    async def _run(self) -> None:
        shown = False  # a flush went through: the ones after it keep the interval
        skipped = 0  # flushes skipped in a row before that
        while not self._stopping.is_set():
            await self._dirty.wait()
            self._dirty.clear()
            if self._stopping.is_set():
                return
            later: float | None = None
            try:
                later = await self._flush()
            except self._errors as exc:
                self._log.warning("could not update the answer in progress: %s", exc)
            if later is None:
                shown, skipped, pause = True, 0, self._interval
            else:
                self._dirty.set()  # what was skipped is still to show
                skipped += 1
                pause = max(self._interval, later) if shown else self._first_retry(later, skipped)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._stopping.wait()

    def _first_retry(self, hint: float, skipped: int) -> float:
        """Until the answer shows something: the lane's hint, doubled for each skip in a row up to the interval,
        plus up to half of the smaller of the two at random, so answers skipped together do not all ask again at
        the same moment (a long hint, a refusal's ``Retry-After``, is not stretched by half)."""
        base = max(hint, min(self._interval, hint * 2.0 ** (skipped - 1)))
        return base + random.random() * min(hint, self._interval) / 2


class PumpedText:
    """The delta and status half of a :class:`Reply` whose text is shown through a :class:`Pump`: collect
    the text (a delta clears the tool status line), mark it new, wake the pump."""

    _text: str
    _tool: str
    _pump: Pump

    async def on_delta(self, delta: str) -> None:
        self._text += delta
        self._tool = ""
        if self._text.strip():
            self._pump.wake()

    async def on_status(self, status: str) -> None:
        """A status line (a tool at work), shown in place until text comes."""
        self._tool = status
        self._pump.wake()

