"""Issue 19 on the pacer: a quiet scope's calls ask no lanes (no Redis round trip), and one refusal anywhere
makes the scope loud for every worker until its lanes are quiet again (issue 21's rules then apply as before).

The lanes' own rules (turns, refusals, holds, decay) are checked in ``tests/adapters/slack/test_limits.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from adapters.kit.pacing import Lanes, LaneSpec, LocalLanes, Pacer, TooLate, quiet_after
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


def test_a_refused_lane_is_quiet_once_its_block_is_over_and_its_interval_back_at_the_base() -> None:
    assert quiet_after(3.0, 1.0, 0.04, base=0.001, half_life=5.0) == pytest.approx(1.0 + 5.0 * 5.3219, rel=1e-3)
    assert quiet_after(30.0, 1.0, 0.04, base=0.001, half_life=5.0) == 30.0, "a long Retry-After outlasts the decay"


async def test_a_quiet_scope_asks_the_lanes_only_for_a_channel_s_hold_until_a_refusal() -> None:
    clock = [100.0]
    lanes = Counted(LocalLanes(LaneSpec(), clock=lambda: clock[0]))
    pacer = Pacer(lanes, clock=lambda: clock[0])
    for _ in range(3):
        assert await pacer.turn("s", "chat.stopStream", urgent=True) == 0.0
        assert await pacer.turn("s", "chat.appendStream", urgent=False) == 0.0
    assert lanes.reserved == [], "nothing refused: no turn asked for"
    assert await pacer.turn("s", "chat.startStream", urgent=True, channel="C1", holder="a") == 0.0
    assert lanes.reserved == [("chat.startStream", "C1")], "the channel's hold is taken all the same"

    await pacer.refused("s", "chat.stopStream", 1.0)
    assert await pacer.turn("s", "chat.appendStream", urgent=False) == 0.0, "its unrefused lanes are free"
    assert await pacer.turn("s", "chat.stopStream", urgent=False) > 0, "its refused one is not"
    assert lanes.reserved[1:] == [("chat.appendStream", ""), ("chat.stopStream", "")], "a loud scope's lanes are asked"
    assert (await pacer.turn("elsewhere", "chat.appendStream", urgent=False)) == 0.0, "other scopes stay quiet"

    clock[0] += quiet_after(1.0, 0.0, 0.04, base=0.001, half_life=5.0) + 0.01
    lanes.reserved.clear()
    assert await pacer.turn("s", "chat.stopStream", urgent=True) == 0.0
    assert lanes.reserved == [], "quiet again once the refused lane has decayed back to its base"


async def test_lanes_spacing_calls_anyway_are_never_skipped() -> None:
    lanes = Counted(LocalLanes(LaneSpec(base=0.1)))
    assert await Pacer(lanes).turn("s", "m", urgent=False) == 0.0
    assert lanes.reserved == [("m", "")], "a lane with a real base spaces every call, refused or not"


async def test_one_worker_s_refusal_makes_the_scope_loud_for_another(redis: Redis, prefix: str) -> None:
    """Two workers on one Redis: the second learns of the first one's refusal from the loud key (read at most
    every ``recheck``), or at once from its next channel hold, and then waits for the lane like the first."""
    first = Pacer(SharedLanes(redis, Keys(prefix)))
    lanes = Counted(SharedLanes(redis, Keys(prefix), recheck=60.0))
    second = Pacer(lanes)
    assert await second.turn("s", "chat.stopStream", urgent=True) == 0.0 and lanes.reserved == []

    assert await first.refused("s", "chat.stopStream", 2.0) is True
    ttl = await redis.pttl(Keys(prefix).pace_loud("s"))
    assert 26_000 < ttl <= 26_700, "loud until 40 ms decays back to 1 ms (half-life 5 s), longer than Retry-After"
    assert await second.turn("s", "chat.stopStream", urgent=True) == 0.0, "read a minute ago: still quiet here"

    assert await second.turn("s", "chat.startStream", urgent=True, channel="C1", holder="b") == 0.0
    await second.release("s", "chat.startStream", "C1", "b")
    assert lanes.reserved == [("chat.startStream", "C1")]
    with pytest.raises(TooLate):  # the hold's reservation told it the scope is loud: the blocked lane is asked
        await second.turn("s", "chat.stopStream", urgent=True, deadline=second._clock() + 0.5)
    assert await second.turn("s", "chat.appendStream", urgent=False) == 0.0, "an unrefused lane of it still goes"
    assert lanes.reserved[1:] == [("chat.stopStream", ""), ("chat.appendStream", "")]

    third = Counted(SharedLanes(redis, Keys(prefix)))
    with pytest.raises(TooLate):
        await Pacer(third).turn("s", "chat.stopStream", urgent=True, deadline=second._clock() + 0.5)
    assert third.reserved == [("chat.stopStream", "")], "a worker reading the loud key for the first time knows"


@pytest.fixture(params=["local", "redis"])
async def quiet_lanes(request: pytest.FixtureRequest, redis: Redis, prefix: str) -> Lanes:
    return LocalLanes() if request.param == "local" else SharedLanes(redis, Keys(prefix))


async def test_a_quiet_scope_s_channel_calls_take_the_hold_and_no_turn(quiet_lanes: Lanes) -> None:
    for channel in ("C1", "C2", "C3"):  # not spaced by the base: many answers start their streams at once
        assert await quiet_lanes.reserve("s", "chat.startStream", urgent=False, channel=channel, holder="a") == \
            (True, 0.0)
    granted, wait = await quiet_lanes.reserve("s", "chat.startStream", urgent=True, channel="C1", holder="b")
    assert not granted and 0 < wait <= 0.05, "the hold still lets one call per channel fly"
    await quiet_lanes.release("s", "chat.startStream", "C1", "a")
    assert await quiet_lanes.reserve("s", "chat.startStream", urgent=True, channel="C1", holder="b") == (True, 0.0)

    await quiet_lanes.refused("s", "chat.startStream", 1.0)
    granted, wait = await quiet_lanes.reserve("s", "chat.startStream", urgent=False, channel="C4", holder="c")
    assert not granted and 0.9 < wait <= 1.0, "loud: the lane's block and spacing count again"
