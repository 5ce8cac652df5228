"""Issue 21 on Discord: many answers in one busy channel share its edit budget, and every final text lands.

The real discord.py client against the loopback fake Discord, whose per-channel edit limit answers like
Discord (``X-RateLimit-*`` headers, 429 with ``retry_after``) and flags any edit that comes back before a
429's ``retry_after`` (``early_retries``). discord.py stays in charge of Discord's 429s; the adapter's
per-channel lane decides which streamed edits are worth sending at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import discord.http
import pytest
from discord.http import Route

from adapters.discord import DiscordAdapter
from adapters.discord.limits import EDIT_SPEC, ChannelEdits, route_of
from adapters.kit.pacing import LaneSpec, LocalLanes
from bot.metrics import Metrics
from tests.fakes import discord_payloads as p
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import MakeRuntime

FAST_EDITS = LaneSpec(base=0.2, cap=2.0, half_life=2.0, horizon=float("inf"))
"""The production lane (an edit per second per channel) scaled to the fake's 5 edits a second."""


def refused(metrics: Metrics, route: str) -> float:
    return metrics.platform_refused.labels("discord", route)._value.get()


def late(metrics: Metrics) -> float:
    return metrics.answers_late.labels("discord")._value.get()


# ---- the per-channel lane ---------------------------------------------------------------------------
async def test_streamed_edits_share_one_budget_per_channel_and_final_edits_come_first() -> None:
    clock = [0.0]
    edits = ChannelEdits(lanes=LocalLanes(LaneSpec(base=1.0, horizon=float("inf")), clock=lambda: clock[0]))
    assert edits.luxury(1) == 0.0
    assert edits.luxury(1) == pytest.approx(1.0), "another answer's edit in the same channel waits its turn"
    assert edits.luxury(2) == 0.0, "each channel has its own budget"
    clock[0] += 1.0
    answer = edits.delivery("d")
    answer.deadline = 0.0  # past: the turns are taken, nobody waits for them
    for _ in range(2):
        async with edits.urgent(1, answer):
            pass
    assert edits.luxury(1) == pytest.approx(2.0), "final edits take the next turns; streamed ones give way"


async def test_final_edits_go_one_at_a_time_per_channel_without_waiting_for_the_lanes_turns() -> None:
    """The lane's spacing is ours, not Discord's: discord.py paces a final edit by the bucket's headers. A final
    that waited for its turn queued a second behind the previous answer's final (its feedback buttons), so in a
    channel answered faster than once a second an answer completed by its final edit waited behind all of them
    (the front-door bench's one-user level: 15-32 s). Finals still go one at a time per channel."""
    clock = [0.0]  # frozen: a final waiting for the lane's turn would never get in below
    edits = ChannelEdits(lanes=LocalLanes(EDIT_SPEC, clock=lambda: clock[0]))
    answer = edits.delivery("d")
    entered: list[int] = []
    leave = {i: asyncio.Event() for i in range(4)}

    async def final(i: int, channel: int = 1) -> None:
        async with edits.urgent(channel, answer):
            entered.append(i)
            await leave[i].wait()

    for i in range(3):
        leave[i].set()
        await asyncio.wait_for(final(i), 1.0)  # never reached: the lane would ask for seconds of a frozen clock
    assert entered == [0, 1, 2], "a channel's finals go to discord.py without waiting for the lane's turns"
    assert edits.luxury(1) == pytest.approx(3.0), "the finals took the lane's turns: streamed edits give way"
    leave[0].clear()
    first, second = asyncio.create_task(final(0)), asyncio.create_task(final(1))
    elsewhere = asyncio.create_task(final(3, channel=2))
    for _ in range(3):
        await asyncio.sleep(0)
    assert entered[3:] == [0, 3], "one final edit at a time per channel; other channels go on"
    leave[0].set()
    leave[3].set()
    await asyncio.gather(first, second, elsewhere)
    assert entered[3:] == [0, 3, 1] and not edits._finals

    edits.refused("PATCH", "https://discord.com/api/v10/channels/1/messages/9", 30.0)
    assert edits.blocked(1) == pytest.approx(30.0, abs=1.0) and edits.blocked(2) == 0.0
    waiting = asyncio.create_task(final(0))
    for _ in range(3):
        await asyncio.sleep(0)
    assert entered[-1] == 1, "Discord's Retry-After for the channel's edits is waited out"
    answer.deadline = 0.0  # past: nobody waits any more, neither for the Retry-After nor for the final ahead
    await asyncio.wait_for(final(2), 1.0)
    assert entered[-1] == 2
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not edits._finals


def test_discord_py_429s_are_counted_slow_the_channel_and_mark_the_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    edits = ChannelEdits(metrics=metrics, server_of=lambda channel: "server 7" if channel == 42 else None)
    url = "https://discord.com/api/v10/channels/42/messages/99"
    route = route_of("PATCH", url)
    assert route == "PATCH /channels/{id}/messages/{id}"
    assert route_of("POST", "https://discord.com/api/v10/webhooks/1/tok3n/messages/@original") == \
        "POST /webhooks/{id}/{token}/messages/@original"
    delivery = edits.delivery("digest1")
    edits.watch()
    try:
        with caplog.at_level(logging.WARNING), edits.answering(delivery):
            for _ in range(2):
                logging.getLogger("discord.http").warning(
                    "We are being rate limited. %s %s responded with 429. Retrying in %.2f seconds.", "PATCH", url, 3.0)
    finally:
        edits.unwatch()
    assert refused(metrics, route) == 2 and delivery.refused == 2
    assert edits.luxury(42) == pytest.approx(3.0, abs=0.05), "no streamed edit there until the retry"
    warnings = [r for r in caplog.records if r.name == "threadkeeper.discord"]
    assert len(warnings) == 1 and "server 7" in warnings[0].getMessage(), "one line per server per minute"
    edits.late(delivery)
    assert late(metrics) == 1


# ---- end to end -------------------------------------------------------------------------------------
async def started(fake_discord: FakeDiscord, make_runtime: MakeRuntime, lanes: LocalLanes, *,
                  edit_interval: float) -> DiscordAdapter:
    """An adapter connected to the fake Discord whose message edits go through ``lanes``."""
    runtime = await make_runtime(discord_token=fake_discord.token, discord_api_base=fake_discord.api_base)
    edits = ChannelEdits(metrics=runtime.metrics, lanes=lanes)
    adapter = DiscordAdapter(runtime.core, runtime.settings, edit_interval=edit_interval, metrics=runtime.metrics,
                             edits=edits)
    identified = len(fake_discord.identifies)
    await adapter.start()
    await fake_discord.wait_identified(identified + 1)
    return adapter


@pytest.fixture
async def bot(fake_discord: FakeDiscord, make_runtime: MakeRuntime) -> AsyncIterator[DiscordAdapter]:
    adapter = await started(fake_discord, make_runtime, LocalLanes(FAST_EDITS), edit_interval=0.1)
    yield adapter
    await adapter.close()


def answer_to(text: str, _items: list[Any]) -> str:
    return f"On {text}: " + " ".join(f"w{i}" for i in range(40)) + " (end)"


def final_answers(fake: FakeDiscord, questions: list[dict[str, Any]]) -> list[str] | None:
    """Each question's answer as it reads now, once every one reads complete."""
    by_reference = {str((m.get("message_reference") or {}).get("message_id")): m["content"]
                    for m in fake.bot_messages(fake.channel_id)}
    texts = [by_reference.get(q["id"], "") for q in questions]
    return texts if all(t.endswith("(end)") for t in texts) else None


async def test_20_answers_at_once_in_one_channel_all_land_within_its_edit_budget(
    fake_discord: FakeDiscord, bot: DiscordAdapter, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = answer_to
    fake_openai.stream_delay = 0.02
    fake_discord.edit_limit(per_channel=5, per_seconds=1.0)
    people = [p.user(p.snowflake(), f"person{i}") for i in range(20)]
    questions = list(await asyncio.gather(*(
        fake_discord.send_guild(f"question {i}", author=person, mention_bot=True) for i, person in enumerate(people))))
    texts = await fake_discord.wait_for(lambda: final_answers(fake_discord, questions), within=60)
    assert texts == [answer_to(f"question {i}", []) for i in range(20)]
    assert len(fake_discord.bot_messages(fake_discord.channel_id)) == 20, "one message per answer, none twice"
    assert fake_discord.early_retries() == []
    edits = [c for c in fake_discord.find("PATCH", r"/channels/\d+/messages/\d+")]
    assert len(edits) <= 2 * 20, "streamed edits are rationed across the channel's answers"
    assert sum(c.refused for c in edits) <= 2


async def test_a_refused_final_edit_is_retried_by_discord_py_and_counted(
    fake_discord: FakeDiscord, bot: DiscordAdapter, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = answer_to
    fake_openai.stream_delay = 0.02
    replica = discord.http.HTTPClient(asyncio.get_running_loop())  # another process on the same token
    await replica.static_login(fake_discord.token)
    try:
        channel = fake_discord.channel_id
        post = Route("POST", "/channels/{channel_id}/messages", channel_id=channel)
        theirs = (await replica.request(post, json={"content": "the replica's"}))["id"]
        fake_discord.edit_limit(per_channel=3, per_seconds=3.0)
        edit = Route("PATCH", "/channels/{channel_id}/messages/{message_id}", channel_id=channel, message_id=theirs)
        # The replica spends the channel's edit budget (discord.py then sleeps until the reset: in a task).
        spending = asyncio.gather(*(replica.request(edit, json={"content": f"edit {i}"}) for i in range(3)))
        await fake_discord.wait_for(lambda: len(fake_discord.find("PATCH", r".*")) == 3)
        question = await fake_discord.send_guild("are you there", mention_bot=True)
        [text] = await fake_discord.wait_for(lambda: final_answers(fake_discord, [question]), within=30)
        await spending
    finally:
        await replica.close()
    assert text == answer_to("are you there", [])
    assert fake_discord.refused and fake_discord.early_retries() == []
    metrics = bot.edits.metrics
    assert metrics is not None
    assert refused(metrics, "PATCH /channels/{id}/messages/{id}") == len(fake_discord.refused)
    await bot.in_flight.settle()
    assert late(metrics) == 1


@pytest.fixture
async def frozen_lane_bot(fake_discord: FakeDiscord, make_runtime: MakeRuntime) -> AsyncIterator[DiscordAdapter]:
    """The production lane (an edit a second per channel) on a clock that never moves: any wait for a turn in
    it would be real seconds, one more for each final edit taken before."""
    adapter = await started(fake_discord, make_runtime, LocalLanes(EDIT_SPEC, clock=lambda: 0.0),
                            edit_interval=0.05)
    yield adapter
    await adapter.close()


async def test_answers_in_a_row_in_one_dm_are_not_queued_behind_the_previous_answers_final_edits(
    fake_discord: FakeDiscord, frozen_lane_bot: DiscordAdapter, fake_openai: FakeOpenAI
) -> None:
    """The front-door bench's one-user level: one person's messages one after another in a DM, each answer
    streamed (first text posted, the rest and the feedback buttons in the final edit). Without a rate limit at
    Discord no answer waits for the lane: the 6th would otherwise wait 5 s behind the first five's finals."""
    fake_openai.reply = answer_to
    fake_openai.stream_delay = 0.02
    channel = fake_discord.dm_channel_for(fake_discord.alice)["id"]

    def complete(question: str) -> bool:
        """The answer reads complete in the DM, its feedback buttons under it (as the bot sent them)."""
        want = answer_to(question, [])
        return any(c.path.startswith(f"/channels/{channel}/messages") and not c.refused and c.json
                   and c.json.get("content") == want and c.json.get("components") for c in fake_discord.calls)

    for i in range(6):
        question = f"question {i}"
        await fake_discord.send_dm(question)
        await fake_discord.wait_for(lambda q=question: complete(q), within=4.0)  # type: ignore[misc]
    edits = fake_discord.find("PATCH", rf"/channels/{channel}/messages/\d+")
    assert len(edits) >= 6 and not any(c.refused for c in edits)
    assert fake_discord.early_retries() == []
