"""The reply pump (:class:`adapters.kit.reply.Pump`): how often it shows what streamed, and when it tries again."""

from __future__ import annotations

import asyncio
import logging
import time

from adapters.kit.reply import Pump

log = logging.getLogger("test.pump")


class Flushes:
    """A flush that answers from a script: None (a request went out) or seconds (skipped, try again then)."""

    def __init__(self, *answers: float | None) -> None:
        self.answers = list(answers)
        self.at: list[float] = []
        self.first = asyncio.Event()
        self.done = asyncio.Event()

    async def __call__(self) -> float | None:
        self.at.append(time.monotonic())
        self.first.set()
        answer = self.answers.pop(0) if self.answers else None
        if not self.answers:
            self.done.set()
        return answer


async def test_a_skipped_first_flush_is_tried_again_after_its_hint_not_the_interval() -> None:
    flushes = Flushes(0.01, None)
    pump = Pump(flushes, interval=30.0, errors=(), log=log)
    pump.wake()
    await asyncio.wait_for(flushes.done.wait(), 10.0)  # far less than the 30 s interval
    await pump.stop()
    assert len(flushes.at) == 2


async def test_after_a_request_the_next_flush_waits_the_interval() -> None:
    interval = 0.3
    flushes = Flushes(None, 0.01, None)
    pump = Pump(flushes, interval=interval, errors=(), log=log)
    pump.wake()
    await asyncio.wait_for(flushes.first.wait(), 10.0)
    pump.wake()  # more text while the first request's interval runs
    await asyncio.wait_for(flushes.done.wait(), 10.0)
    await pump.stop()
    first, skipped, sent = flushes.at
    assert skipped - first >= interval - 0.001, "the next flush came no sooner than the interval after the request"
    assert sent > skipped


async def test_skips_in_a_row_before_anything_shows_back_off_towards_the_interval() -> None:
    """Answers whose lane is busy do not all ask again every hint: each skip in a row waits twice as long, up to the
    interval (and never less than the hint)."""
    interval, hint = 0.16, 0.01
    flushes = Flushes(hint, hint, hint, hint, hint, hint, None)
    pump = Pump(flushes, interval=interval, errors=(), log=log)
    pump.wake()
    await asyncio.wait_for(flushes.done.wait(), 10.0)
    await pump.stop()
    gaps = [b - a for a, b in zip(flushes.at, flushes.at[1:], strict=False)]
    least = [min(interval, hint * 2**k) for k in range(len(gaps))]
    assert all(gap >= at_least - 0.001 for gap, at_least in zip(gaps, least, strict=True)), (gaps, least)
