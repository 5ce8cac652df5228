"""Issue 19 on the pacer: a quiet scope's calls take their turns in the process's own lanes (no Redis round trip
but a channel's hold), and one refusal anywhere makes the scope loud for every worker until its lanes are quiet
again (issue 21's rules then apply as before, from the shared lanes).

The lanes' own rules (turns, refusals, holds, decay) are checked in ``tests/adapters/slack/test_limits.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from adapters.kit.pacing import Lanes, LocalLanes, Pacer, TooLate
from bot.store.keys import Keys
from bot.store.pacing import SharedLanes


class Counted:
    """Lanes that count the turns asked of them (each one a Redis round trip for the shared lanes)."""

    def __init__(self, lanes: Lanes) -> None:
        self.lanes = lanes
        self.reserved: list[tuple[str, str]] = []

    async def reserve(self, scope: str, method: str, *, urgent: bool, channel: str = "",
                      holder: str = "") -> tuple[bool, float]:
        self.reserved.append((method, channel))
        return await self.lanes.reserve(scope, method, urgent=urgent, channel=channel, holder=holder)

    async def refused(self, scope: str, method: str, retry_after: float) -> bool:
        return await self.lanes.refused(scope, method, retry_after)

    async def release(self, scope: str, method: str, channel: str, holder: str) -> None:
        await self.lanes.release(scope, method, channel, holder)

    async def quiet(self, scope: str) -> bool:
        return await self.lanes.quiet(scope)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def test_a_quiet_scope_asks_the_shared_lanes_only_for_a_channel_s_hold(redis: Redis, prefix: str) -> None:
    clock = [100.0]
    lanes = Counted(SharedLanes(redis, Keys(prefix)))
    pacer = Pacer(lanes, clock=lambda: clock[0])
    assert await pacer.turn("s", "chat.stopStream", urgent=True) == 0.0
    assert await pacer.turn("s", "chat.appendStream", urgent=False) == 0.0
    assert await pacer.turn("s", "chat.appendStream", urgent=False) == pytest.approx(0.01), \
        "a burst still goes one call at a time (this process's lane, a base apart; a luxury is told the least hint)"
    clock[0] += 0.001
    assert await pacer.turn("s", "chat.appendStream", urgent=False) == 0.0
    assert lanes.reserved == [], "nothing refused: no turn asked of Redis"
    assert await pacer.turn("s", "chat.startStream", urgent=True, channel="C1", holder="a") == 0.0
    assert lanes.reserved == [("chat.startStream", "C1")], "the channel's hold is taken all the same"
    assert not (await lanes.reserve("s", "chat.startStream", urgent=False, channel="C1", holder="b"))[0]

    await pacer.refused("s", "chat.stopStream", 1.0)
    lanes.reserved.clear()
    assert await pacer.turn("s", "chat.appendStream", urgent=False) == 0.0, "its unrefused lanes are free"
    assert await pacer.turn("s", "chat.stopStream", urgent=False) > 0, "its refused one is not"
    assert lanes.reserved == [("chat.appendStream", ""), ("chat.stopStream", "")], "a loud scope's turns are shared"
    assert await Pacer(lanes).turn("elsewhere", "chat.stopStream", urgent=True) == 0.0
    assert lanes.reserved[2:] == [], "other scopes stay quiet"


async def test_in_process_lanes_are_always_asked() -> None:
    lanes = Counted(LocalLanes())
    assert await Pacer(lanes).turn("s", "m", urgent=False) == 0.0
    assert lanes.reserved == [("m", "")]


async def test_a_quiet_scope_s_reservation_takes_the_hold_alone(redis: Redis, prefix: str) -> None:
    lanes = SharedLanes(redis, Keys(prefix))
    for channel in ("C1", "C2", "C3"):  # not spaced: this process's own lanes do that
        assert await lanes.reserve("s", "chat.startStream", urgent=False, channel=channel, holder="a") == (True, 0.0)
    granted, wait = await lanes.reserve("s", "chat.startStream", urgent=True, channel="C1", holder="b")
    assert not granted and 0 < wait <= 0.05, "the hold still lets one call per channel fly"
    await lanes.release("s", "chat.startStream", "C1", "a")
    assert await lanes.reserve("s", "chat.startStream", urgent=True, channel="C1", holder="b") == (True, 0.0)

    await lanes.refused("s", "chat.startStream", 1.0)
    granted, wait = await lanes.reserve("s", "chat.startStream", urgent=False, channel="C4", holder="c")
    assert not granted and 0.9 < wait <= 1.0, "loud: the lane's block and spacing count again"


async def test_one_worker_s_refusal_makes_the_scope_loud_for_another(redis: Redis, prefix: str) -> None:
    """Workers on one Redis: another learns of one's refusal from the loud key, read at most every ``recheck``
    (0.1 s, on a clock of the test's), or at once from its next channel hold, and then waits for the lane like
    the first; a hold asked in a scope gone loud since waits for the shared lane's turn."""
    clock = [0.0]
    first = Pacer(SharedLanes(redis, Keys(prefix)))
    lanes = Counted(SharedLanes(redis, Keys(prefix), clock=lambda: clock[0]))
    second = Pacer(lanes, clock=lambda: clock[0])
    late = Counted(SharedLanes(redis, Keys(prefix), recheck=60.0))
    third = Pacer(late)
    for worker in (second, third):  # each reads the loud key: quiet
        assert await worker.turn("s", "chat.stopStream", urgent=True) == 0.0
    assert lanes.reserved == late.reserved == []

    assert await first.refused("s", "chat.stopStream", 2.0) is True
    ttl = await redis.pttl(Keys(prefix).pace_loud("s"))
    assert 26_000 < ttl <= 26_700, "loud until 40 ms decays back to 1 ms (half-life 5 s), longer than Retry-After"
    await first.refused("s", "chat.update", 30.0)
    assert 29_000 < await redis.pttl(Keys(prefix).pace_loud("s")) <= 30_000, "or until the longest block is over"
    clock[0] = 0.05
    for method in ("chat.appendStream", "chat.update", "chat.stopStream"):
        assert await second.turn("s", method, urgent=False) == 0.0
    assert lanes.reserved == [], "read 50 ms ago: still quiet here, calls without a hold go on (the bounded window)"
    clock[0] = 0.1
    with pytest.raises(TooLate):  # recheck is over: the key is read again, and the blocked lane is asked
        await second.turn("s", "chat.stopStream", urgent=True, deadline=clock[0] + 0.5)
    assert await second.turn("s", "chat.update", urgent=False) > 1.0, "every method of the scope, at once"
    assert lanes.reserved == [("chat.stopStream", ""), ("chat.update", "")]

    assert await third.turn("s", "chat.stopStream", urgent=True) == 0.0, "read a minute ago: still quiet there"
    assert await third.turn("s", "chat.startStream", urgent=True, channel="C1", holder="b") == 0.0
    await third.release("s", "chat.startStream", "C1", "b")
    assert late.reserved == [("chat.startStream", "C1")]
    with pytest.raises(TooLate):  # the hold's reservation told it the scope is loud: the blocked lane is asked
        await third.turn("s", "chat.stopStream", urgent=True, deadline=third._clock() + 0.5)
    assert await third.turn("s", "chat.appendStream", urgent=False) == 0.0, "an unrefused lane of it still goes"
    assert late.reserved[1:] == [("chat.stopStream", ""), ("chat.appendStream", "")]

    fourth = Counted(SharedLanes(redis, Keys(prefix)))
    with pytest.raises(TooLate):
        await Pacer(fourth).turn("s", "chat.stopStream", urgent=True, deadline=third._clock() + 0.5)
    assert fourth.reserved == [("chat.stopStream", "")], "a worker reading the loud key for the first time knows"

    worker_c = Pacer(SharedLanes(redis, Keys(prefix), recheck=60.0, horizon=10.0))
    assert await worker_c.turn("t", "chat.update", urgent=True) == 0.0, "t is quiet here, not read again for a minute"
    await first.refused("t", "chat.postMessage", 2.0)
    with pytest.raises(TooLate) as too_late:  # its own lane grants the turn; the hold's reservation says "in 2 s"
        await worker_c.turn("t", "chat.postMessage", urgent=True, channel="C2", holder="c",
                            deadline=worker_c._clock() + 1.0)
    assert 1.0 < too_late.value.wait <= 2.0, "the shared lane's wait is not thrown away"


async def test_the_loud_key_is_read_once_per_recheck_not_per_call(redis: Redis, prefix: str) -> None:
    clock = [0.0]
    lanes = SharedLanes(redis, Keys(prefix), clock=lambda: clock[0])
    reads: list[float] = []
    pttl = lanes.redis.pttl

    async def counted(key: str) -> int:
        reads.append(clock[0])
        return int(await pttl(key))

    lanes.redis.pttl = counted  # type: ignore[method-assign]
    pacer = Pacer(lanes, clock=lambda: clock[0])
    for step in range(150):  # 150 calls in 0.3 s (2 ms apart): 3 reads, not a round trip per call
        clock[0] = step / 500
        assert await pacer.turn("s", "chat.appendStream", urgent=False) == 0.0
    assert reads == pytest.approx([0.0, 0.1, 0.2])


async def test_this_process_s_refusal_voids_its_own_lanes_turns_for_every_method(redis: Redis, prefix: str) -> None:
    """A burst's later turns wait in the process's own lanes; a refusal of another method meanwhile makes the
    scope loud here at once, and the waiting turn is asked again of the shared lanes when it comes."""
    clock = [0.0]
    asked = asyncio.Event()

    class Told(Counted):
        async def quiet(self, scope: str) -> bool:
            quiet = await self.lanes.quiet(scope)
            asked.set()
            return quiet

    lanes = Told(SharedLanes(redis, Keys(prefix), clock=lambda: clock[0]))
    pacer = Pacer(lanes, clock=lambda: clock[0])
    assert await pacer.turn("s", "chat.stopStream", urgent=True) == 0.0
    asked.clear()
    waiting = asyncio.create_task(pacer.turn("s", "chat.stopStream", urgent=True))  # its own lane: 1 ms from now
    await asked.wait()  # the task took its own lane's turn and sleeps until it comes
    assert not waiting.done() and lanes.reserved == []
    await pacer.refused("s", "chat.update", 2.0)
    assert await waiting == 0.0
    assert lanes.reserved == [("chat.stopStream", "")], "the turn came in a loud scope: asked of the shared lanes"


async def test_an_older_quiet_reply_does_not_overwrite_a_newer_loud_state(redis: Redis, prefix: str) -> None:
    """A ``PTTL`` read sent before a refusal but answered after it (held here by events) said "no loud key"."""
    clock = [0.0]
    lanes = SharedLanes(redis, Keys(prefix), clock=lambda: clock[0])
    read, answer = asyncio.Event(), asyncio.Event()
    pttl = lanes.redis.pttl

    async def late(key: str) -> int:
        ttl = int(await pttl(key))
        read.set()
        await answer.wait()
        return ttl

    lanes.redis.pttl = late  # type: ignore[method-assign]
    reading = asyncio.create_task(lanes.quiet("s"))
    await read.wait()  # Redis answered "no loud key"; the reply is not handled yet
    await lanes.refused("s", "chat.update", 2.0)
    answer.set()
    assert await reading is False and await lanes.quiet("s") is False, "the newer loud state stands"
    clock[0] = 20.0
    lanes.redis.pttl = pttl  # type: ignore[method-assign]
    await redis.delete(Keys(prefix).pace_loud("s"))  # as if it had lapsed: loud was ahead, the key's word stands
    assert await lanes.quiet("s") is False, "loud until about 26.6 s on this clock"
    clock[0] = 27.0
    assert await lanes.quiet("s") is True, "once the loud state is over, quiet is heard again"


class SlowHold(Counted):
    """Shared lanes whose round trip for the hold of ``channel`` takes ``trip`` seconds of the pacer's clock."""

    def __init__(self, lanes: Lanes, clock: list[float], channel: str, trip: float) -> None:
        super().__init__(lanes)
        self.clock, self.channel, self.trip = clock, channel, trip

    async def reserve(self, scope: str, method: str, *, urgent: bool, channel: str = "",
                      holder: str = "") -> tuple[bool, float]:
        granted = await super().reserve(scope, method, urgent=urgent, channel=channel, holder=holder)
        if channel == self.channel:
            self.clock[0] += self.trip
        return granted


async def _burst_of_two(redis: Redis, prefix: str, trip: float, deadline: float) -> float:
    """Two calls of a quiet scope at 100.0 s, for two channels: the second is handed the turn a base (1 ms) after
    the first, at 100.001 s, and its hold's round trip takes ``trip``. The second's turn, with its ``deadline``."""
    clock = [100.0]
    lanes = SharedLanes(redis, Keys(prefix), clock=lambda: clock[0])  # its quiet cache on the same clock
    pacer = Pacer(SlowHold(lanes, clock, "C2", trip), clock=lambda: clock[0])
    assert await pacer.turn("s", "chat.postMessage", urgent=True) == 0.0  # the scope read quiet: no round trip now
    first, second = await asyncio.gather(
        pacer.turn("s", "chat.startStream", urgent=True, channel="C1", holder="a"),
        pacer.turn("s", "chat.startStream", urgent=True, channel="C2", holder="b", deadline=deadline),
    )
    assert first == 0.0 and clock[0] == 100.0 + trip
    return second


async def test_a_turn_counts_from_when_it_was_handed_out_not_from_the_hold_s_reply(redis: Redis, prefix: str) -> None:
    """The second call's turn is at 100.001 s, however long its hold's round trip took: once that took longer, it
    goes at once (on a busy loop a needless sleep costs a whole pass of the loop); else it waits what is left. The
    deadlines tell: an urgent turn raises :class:`TooLate` when it would come after its deadline (before, a turn
    came its whole wait after the hold's reply, and both first cases raised)."""
    assert await _burst_of_two(redis, f"{prefix}:a", 0.005, deadline=100.0051) == 0.0
    assert await _burst_of_two(redis, f"{prefix}:b", 0.0004, deadline=100.0011) == 0.0
    with pytest.raises(TooLate):
        await _burst_of_two(redis, f"{prefix}:c", 0.0004, deadline=100.0009)
