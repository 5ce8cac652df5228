"""Issue 21 on Slack: under the platform's rate limits no answer is lost, cut short or posted twice.

End to end through the real Bolt app (signed HTTP events), the real ``AsyncWebClient`` and the loopback
fake Slack, which answers like Slack over its limits (HTTP 429, ``Retry-After``, ``ratelimited``) and
flags any call that comes back before a refusal's ``Retry-After`` (``early_retries``) and any text posted
twice in one place (``duplicate_posts``). The limits are tighter than Slack's (budgets of a few calls),
so a test takes seconds. The lanes' rules are checked on their own first, for the in-process lanes and
the Redis ones alike.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from adapters.kit.pacing import Lanes, LaneSpec, LocalLanes, Pacer, TooLate
from adapters.slack.limits import NoRepostConnectionRetry, PacedRateLimitRetry, SlackCalls
from adapters.slack.mrkdwn import markdown_to_mrkdwn
from adapters.slack.parse import Target, thread_key
from adapters.slack.reply import SlackReply, StreamSupport
from bot.runtime import Runtime
from bot.store.keys import Keys
from bot.store.pacing import SharedLanes
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import (
    BOT_USER_ID,
    TEAM_ID,
    FakeSlack,
    command_form,
    dm_event,
    event_envelope,
    mention_event,
)
from tests.support.local_http import serve
from tests.support.slack import Slack, StartSlack

JSON = dict[str, Any]
CHAT = ("chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream", "chat.stopStream")


# ---- the lanes ------------------------------------------------------------------------------------
SPEC = LaneSpec(base=0.1, cap=0.8, half_life=60.0, horizon=0.25, hold_ttl=5.0, poll=0.05)


@pytest.fixture(params=["local", "redis"])
async def lanes(request: pytest.FixtureRequest, redis_url: str, prefix: str) -> AsyncIterator[Lanes]:
    if request.param == "local":
        yield LocalLanes(SPEC)
        return
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url, decode_responses=True)
    yield SharedLanes(client, Keys(prefix), base=SPEC.base, cap=SPEC.cap, half_life=SPEC.half_life,
                      horizon=SPEC.horizon, hold_ttl=SPEC.hold_ttl, poll=SPEC.poll)
    await client.aclose()


def near(value: float, expected: float) -> bool:
    """Equal up to the time that passes between two calls (the Redis lanes run on the server's clock)."""
    return expected - 0.05 <= value <= expected + 0.002


async def test_a_luxury_goes_only_when_the_lane_is_free_and_urgent_calls_queue(lanes: Lanes) -> None:
    assert await lanes.reserve("s", "m", urgent=False) == (True, 0.0)
    granted, wait = await lanes.reserve("s", "m", urgent=False)
    assert not granted and near(wait, 0.1), "the next luxury is told when the lane is free again"
    first = await lanes.reserve("s", "m", urgent=True)
    second = await lanes.reserve("s", "m", urgent=True)
    assert first[0] and near(first[1], 0.1)
    assert second[0] and near(second[1], 0.2), "urgent turns queue one interval apart"
    granted, wait = await lanes.reserve("s", "m", urgent=True)
    assert not granted and near(wait, 0.3 - SPEC.horizon), "turns are handed out only a horizon ahead"
    assert (await lanes.reserve("s", "other", urgent=False))[0], "each method has its own lane"
    assert (await lanes.reserve("elsewhere", "m", urgent=False))[0], "each scope has its own lanes"


async def test_a_refusal_blocks_the_lane_until_retry_after_and_doubles_its_interval_once(lanes: Lanes) -> None:
    assert await lanes.refused("s", "m", 1.0) is True, "the scope's first refusal this minute: warn"
    assert await lanes.refused("s", "m", 0.5) is False, "one warning per scope per minute"
    granted, wait = await lanes.reserve("s", "m", urgent=False)
    assert not granted and near(wait, 1.0)
    granted, wait = await lanes.reserve("s", "m", urgent=True)
    assert not granted and near(wait, 1.0 - SPEC.horizon), "urgent calls too wait for Retry-After"
    if isinstance(lanes, LocalLanes):
        assert lanes.interval("s", "m") == pytest.approx(0.2, rel=1e-3), "doubled once: the second came while blocked"
    elif isinstance(lanes, SharedLanes):
        assert await lanes.interval("s", "m") == pytest.approx(0.2)
    assert (await lanes.reserve("s", "other", urgent=False))[0], "other methods go on"


async def test_the_interval_decays_back_while_nothing_is_refused() -> None:
    clock = [0.0]
    lanes = LocalLanes(LaneSpec(base=0.1, cap=1.0, half_life=2.0), clock=lambda: clock[0])
    for _ in range(5):  # each refusal after the last one's Retry-After: 0.2, 0.4, 0.8, then the cap
        lanes.refused_now("s", "m", 0.001)
        clock[0] += 0.001
    assert lanes.interval("s", "m") == pytest.approx(1.0, rel=1e-2)
    clock[0] += 1.0
    assert lanes.interval("s", "m") == pytest.approx(0.5 ** 0.5, rel=1e-2)
    clock[0] += 3.0
    assert lanes.interval("s", "m") == pytest.approx(0.25, rel=1e-2)
    granted, _ = lanes.reserve_now("s", "m", urgent=False)
    assert granted and lanes.reserve_now("s", "m", urgent=False) == (False, pytest.approx(0.25, rel=1e-2))
    clock[0] += 60.0
    assert lanes.interval("s", "m") == 0.1, "back to the base, never below"


async def test_a_channel_hold_lets_one_call_per_channel_fly(lanes: Lanes) -> None:
    assert (await lanes.reserve("s", "post", urgent=True, channel="C1", holder="a"))[0]
    granted, wait = await lanes.reserve("s", "post", urgent=True, channel="C1", holder="b")
    assert not granted and 0 < wait <= SPEC.poll, "someone else's call is in flight there: ask again soon"
    assert (await lanes.reserve("s", "post", urgent=True, channel="C1", holder="a"))[0], "the holder's retry"
    await lanes.release("s", "post", "C1", "b")  # not b's: nothing happens
    assert not (await lanes.reserve("s", "post", urgent=False, channel="C1", holder="b"))[0]
    await lanes.release("s", "post", "C1", "a")
    assert (await lanes.reserve("s", "post", urgent=True, channel="C1", holder="b"))[0]
    assert (await lanes.reserve("s2", "post", urgent=False, channel="C1", holder="c"))[0], "holds are per scope"


async def test_an_answer_s_first_message_waits_its_turn_in_line_when_it_is_near(lanes: Lanes) -> None:
    """A plain luxury is skipped while the lane is busy; a first message given ``wait`` takes the next turn in line
    (used once granted, even a little past ``wait``: never granted and lost), holding the channel while it flies
    (given back after), and is skipped, taking no turn, when its turn is further off than the lanes hand out."""
    calls = SlackCalls(Pacer(lanes))
    delivery = calls.delivery(TEAM_ID, "abc123")
    scope = calls.scope(TEAM_ID)
    sent: list[str] = []

    async def post() -> str:
        granted, _ = await lanes.reserve(scope, "chat.startStream", urgent=False, channel="C1", holder="other")
        sent.append("held" if not granted else "free")
        return "posted"

    assert (await lanes.reserve(scope, "chat.startStream", urgent=False))[0]  # the lane is busy for 0.1 s
    result, later = await calls.luxury(delivery, "chat.startStream", post, channel="C1")
    assert result is None and 0 < later <= 0.1 + 0.01, "a plain luxury is skipped, told when to ask again"
    result, later = await calls.luxury(delivery, "chat.startStream", post, channel="C1", wait=0.02)
    assert (result, later) == ("posted", 0.0), "its granted turn (0.1 s off) was used, not thrown away"
    for _ in range(2):  # the next turns 0.1 and 0.2 s off are someone else's: the free one is past the horizon
        assert (await lanes.reserve(scope, "chat.startStream", urgent=True))[0]
    result, later = await calls.luxury(delivery, "chat.startStream", post, channel="C1", wait=0.02)
    assert result is None and later > 0.02, "its turn is further off than it may wait: skipped"
    result, later = await calls.luxury(delivery, "chat.startStream", post, channel="C1", wait=1.0)
    assert (result, later) == ("posted", 0.0), "it waited in line for its turn"
    assert sent == ["held", "held"], "the channel was held while it flew"
    assert (await lanes.reserve(scope, "chat.startStream", urgent=True, channel="C1", holder="other"))[0], \
        "and given back after"


class BrokenLanes:
    async def reserve(self, scope: str, method: str, *, urgent: bool, channel: str = "",
                      holder: str = "") -> tuple[bool, float]:
        raise ConnectionError("redis is down")

    async def refused(self, scope: str, method: str, retry_after: float) -> bool:
        raise ConnectionError("redis is down")

    async def release(self, scope: str, method: str, channel: str, holder: str) -> None:
        raise ConnectionError("redis is down")

    async def quiet(self, scope: str) -> bool:
        raise ConnectionError("redis is down")


async def test_without_the_shared_lanes_a_process_still_never_calls_before_retry_after() -> None:
    clock = [100.0]
    pacer = Pacer(BrokenLanes(), clock=lambda: clock[0])
    assert await pacer.turn("s", "m", urgent=False) == 0.0, "no shared lanes: calls go on"
    assert await pacer.refused("s", "m", 2.0) is True and await pacer.refused("s", "m", 2.0) is False
    assert await pacer.turn("s", "m", urgent=False) == 2.0
    with pytest.raises(TooLate):
        await pacer.turn("s", "m", urgent=True, deadline=clock[0] + 1.0)
    clock[0] += 2.0
    assert await pacer.turn("s", "m", urgent=True, deadline=clock[0] + 1.0) == 0.0


# ---- slack_sdk's retry handlers ------------------------------------------------------------------------
def request_for(method: str) -> HttpRequest:
    return HttpRequest(method="POST", url=f"https://slack.com/api/{method}", headers={})


async def test_a_dropped_connection_is_never_retried_for_a_post_but_is_for_an_edit() -> None:
    handler = NoRepostConnectionRetry()
    dropped = aiohttp.ServerDisconnectedError()
    for method in ("chat.postMessage", "chat.startStream", "chat.appendStream", "chat.stopStream",
                   "chat.postEphemeral"):
        assert not await handler.can_retry_async(state=RetryState(), request=request_for(method), error=dropped)
    assert await handler.can_retry_async(state=RetryState(), request=request_for("chat.update"), error=dropped)


async def test_the_adapter_client_retries_refusals_and_never_reposts(start_bot: StartSlack) -> None:
    bot = await start_bot()
    handlers = bot.adapter.client.retry_handlers
    assert [type(h) for h in handlers] == [NoRepostConnectionRetry, PacedRateLimitRetry]
    assert isinstance(handlers[1], AsyncRateLimitErrorRetryHandler)


async def test_a_post_whose_outcome_is_unknown_is_not_posted_again(caplog: pytest.LogCaptureFixture) -> None:
    posts: list[JSON] = []

    async def api(request: web.Request) -> web.Response:
        body = await request.json() if request.content_type == "application/json" else dict(await request.post())
        posts.append({"method": request.match_info["method"], **body})
        assert request.transport is not None
        request.transport.close()  # the request arrived; the answer never does
        return web.Response()

    app = web.Application()
    app.router.add_post("/api/{method}", api)
    runner, base = await serve(app)
    try:
        client = AsyncWebClient(token="xoxb-test", base_url=f"{base}/api/")
        calls = SlackCalls(Pacer(LocalLanes()))
        calls.install(client)
        reply = SlackReply(client, Target("D1", None, TEAM_ID, "U1", True), streams=StreamSupport(), calls=calls,
                           digest="abc123")
        with caplog.at_level(logging.ERROR, logger="threadkeeper.slack"):
            await reply.finish("the whole answer")
            await reply.close()
        assert [(p["method"], p["text"]) for p in posts] == [("chat.postMessage", "the whole answer")], \
            "sent once, never again"
        [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "abc123" in error.getMessage() and "outcome unknown" in error.getMessage()
    finally:
        await runner.cleanup()


# ---- end to end --------------------------------------------------------------------------------
@pytest.fixture
def start_bot(start_slack: StartSlack) -> StartSlack:
    """``await start_bot()``: one more worker on the same Redis prefix (a second process, as far as it knows)."""
    return functools.partial(start_slack, update_interval=0.05, deliver_within=60.0)


def tight_limits(fake: FakeSlack) -> None:
    """A budget of 5 calls at once then 10 a second per method and workspace; posts 1 a second per channel."""
    for method in CHAT:
        fake.rate_limit(method, per_second=10, burst=5)
    fake.rate_limit_channel("chat.postMessage", per_second=1, burst=1)


def answer_to(text: str, _items: list[JSON]) -> str:
    return f"About {text}: " + " ".join(f"point{i}" for i in range(30)) + ". The end."


def long_answers_under_tight_limits(fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    """Streamed answers of some length (:func:`answer_to`) against :func:`tight_limits`."""
    fake_openai.reply = answer_to
    fake_openai.stream_delay = 0.01
    tight_limits(fake_slack)


def refused_counted(runtimes: list[Runtime]) -> float:
    total = 0.0
    for runtime in runtimes:
        for metric in runtime.metrics.platform_refused.collect():
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


def late_counted(runtime: Runtime) -> float:
    return runtime.metrics.answers_late.labels("slack")._value.get()


async def send_all(bots: list[Slack], n_dms: int, n_mentions: int) -> tuple[list[JSON], list[JSON]]:
    dms = [dm_event(f"question {i}", user=f"U{i:03d}", channel=f"D{i:03d}") for i in range(n_dms)]
    mentions = [mention_event(f"<@{BOT_USER_ID}> topic {i}", user=f"U{i:03d}", channel="C1BUSY")
                for i in range(n_mentions)]
    events = [e for pair in zip(dms, mentions, strict=False) for e in pair] + dms[n_mentions:] + mentions[n_dms:]
    statuses = await asyncio.gather(*(bots[(i // 2) % len(bots)].event(event_envelope(e))
                                      for i, e in enumerate(events)))
    assert set(statuses) == {200}
    return dms, mentions


def assert_all_complete(fake: FakeSlack, dms: list[JSON], mentions: list[JSON]) -> None:
    for event in dms:
        [answer] = fake.in_thread(event["channel"], None)
        assert answer.text == markdown_to_mrkdwn(answer_to(event["text"], []))
    for event in mentions:
        [answer] = fake.in_thread(event["channel"], event["ts"])
        # THREAD_SCOPE's default is now "shared" (issue 15): a channel thread's turns carry their speaker's name.
        asked = f"{fake.name_of(event['user'])}: " + event["text"].replace(f"<@{BOT_USER_ID}> ", "")
        assert answer.streamed and not answer.streaming and answer.text == answer_to(asked, [])
    assert fake.early_retries() == [], "no call came back before its Retry-After"
    assert fake.duplicate_posts() == [], "no message was posted twice"


async def test_120_answers_at_once_all_arrive_complete_under_tight_limits(
    start_bot: StartSlack, fake_slack: FakeSlack, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    long_answers_under_tight_limits(fake_slack, fake_openai)
    bot = await start_bot()
    with caplog.at_level(logging.WARNING, logger="threadkeeper.slack"):
        dms, mentions = await send_all([bot], 60, 60)
        await bot.adapter.settle(within=90)
    assert_all_complete(fake_slack, dms, mentions)
    assert fake_slack.refused, "the limits were reached (else this proves nothing)"
    assert refused_counted([bot.runtime]) == len(fake_slack.refused), "every refusal is counted"
    assert late_counted(bot.runtime) >= 1
    warnings = [r for r in caplog.records if "rate-limiting workspace" in r.getMessage()]
    assert len(warnings) == 1 and TEAM_ID in warnings[0].getMessage(), "one line per workspace per minute"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_two_workers_share_one_workspace_budget(
    start_bot: StartSlack, fake_slack: FakeSlack, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    long_answers_under_tight_limits(fake_slack, fake_openai)
    bots = [await start_bot(), await start_bot()]
    with caplog.at_level(logging.WARNING, logger="threadkeeper.slack"):
        dms, mentions = await send_all(bots, 30, 30)  # the mentions of both land in one channel
        await asyncio.gather(*(b.adapter.settle(within=90) for b in bots))
    assert_all_complete(fake_slack, dms, mentions)
    assert fake_slack.refused and refused_counted([b.runtime for b in bots]) == len(fake_slack.refused)
    granted = sum(1 for c in fake_slack.calls if c.method in CHAT and not c.refused)
    assert len(fake_slack.refused) < granted / 2, "the workers pace one budget together, not each their own"
    warnings = [r for r in caplog.records if "rate-limiting workspace" in r.getMessage()]
    assert len(warnings) == 1, "one line per workspace per minute, from all workers together"


async def test_an_answer_that_cannot_get_through_by_the_deadline_is_an_error_with_its_digest(
    start_bot: StartSlack, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start_bot(deliver_within=0.5)
    fake_slack.rate_limit("chat.postMessage", per_second=0.2, burst=1)  # one post, then Retry-After: 5 s
    with caplog.at_level(logging.ERROR, logger="threadkeeper.slack"):
        assert await bot.event(event_envelope(dm_event("first", channel="D2", user="U2"))) == 200
        assert await bot.event(event_envelope(dm_event("second", channel="D3", user="U3"))) == 200
        await bot.adapter.settle()
    delivered = [c for c in ("D2", "D3") if [m.text for m in fake_slack.in_thread(c, None)] != []]
    lost = {"D2", "D3"} - set(delivered)
    assert len(delivered) == 1 and len(lost) == 1
    [channel] = lost
    user = {"D2": "U2", "D3": "U3"}[channel]
    digest = thread_key("user", TEAM_ID, channel, user, None).digest
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert digest in error.getMessage() and "not delivered" in error.getMessage()
    assert fake_slack.early_retries() == []


async def test_a_refused_forget_reply_is_retried_after_retry_after(
    start_bot: StartSlack, fake_slack: FakeSlack
) -> None:
    bot = await start_bot()
    fake_slack.rate_limit("response_url", per_second=1, burst=1)
    forms = [command_form("/forget", "", channel=f"D{i}", user=f"U{i}", response_url=fake_slack.response_url(f"r{i}"))
             for i in range(3)]
    assert [status for status, _ in await asyncio.gather(*(bot.command(f) for f in forms))] == [200, 200, 200]
    await bot.adapter.settle(within=20)
    assert sorted(name for name, _ in fake_slack.responses) == ["r0", "r1", "r2"]
    assert fake_slack.refused and fake_slack.early_retries() == []
