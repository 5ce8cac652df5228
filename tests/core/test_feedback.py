"""Feedback buttons under finished answers: on the final Slack call, clicks counted, thanked privately."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest

from adapters.slack.feedback import FEEDBACK_ACTION, feedback_blocks
from bot.ops.admin import main as admin_main
from bot.ops.metrics_http import MetricsServer, start_metrics_server
from tests.fakes import discord_payloads as dp
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import BOT_USER_ID, TEAM_ID, dm_event, event_envelope, mention_event, sign
from tests.support.discord import StartBot, wait_answer
from tests.support.fixtures import free_port
from tests.support.metrics import scrape
from tests.support.slack import SECRET, Slack

JSON = dict[str, Any]


@pytest.fixture
async def metrics(slack: Slack) -> AsyncIterator[MetricsServer]:
    server = await start_metrics_server(slack.runtime, free_port(), host="127.0.0.1")
    yield server
    await server.stop()


def click(value: str, *, channel: str, message_ts: str, block_id: str, response_url: str) -> JSON:
    """A ``block_actions`` payload for a click on the feedback buttons, shaped like Slack's."""
    return {
        "type": "block_actions", "team": {"id": TEAM_ID, "domain": "fake"},
        "user": {"id": "U1USER", "username": "someone", "team_id": TEAM_ID}, "api_app_id": "A0APP",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "channel": {"id": channel, "name": "general"}, "trigger_id": "1.2.abc", "response_url": response_url,
        "actions": [{"type": "feedback_buttons", "action_id": FEEDBACK_ACTION, "block_id": block_id,
                     "value": value, "action_ts": "1700000000.000100"}],
    }


async def post_click(slack: Slack, payload: JSON) -> int:
    body = urlencode({"payload": json.dumps(payload)})
    status, _ = await slack.post(body, "application/x-www-form-urlencoded", sign(body, SECRET))
    return status


def buttons(blocks: list[JSON]) -> JSON:
    [actions] = [b for b in blocks if b["type"] == "context_actions"]
    [element] = actions["elements"]
    assert element["type"] == "feedback_buttons" and element["action_id"] == FEEDBACK_ACTION
    assert element["positive_button"]["value"] == "positive"
    assert element["negative_button"]["value"] == "negative"
    return actions


def value_of(samples: dict[Any, float], value: str) -> float:
    return samples.get(("threadkeeper_feedback_total", (("platform", "slack"), ("value", value))), 0.0)


async def test_a_streamed_answer_ends_with_the_buttons_and_a_click_is_counted_and_thanked(
    slack: Slack, fake_openai: FakeOpenAI, metrics: MetricsServer
) -> None:
    event = mention_event(f"<@{BOT_USER_ID}> hello", channel="C5")
    assert await slack.event(event_envelope(event)) == 200
    [answer] = await slack.answers("C5", event["ts"])
    await slack.adapter.settle()
    assert answer.streamed and answer.text.endswith("hello")
    assert slack.fake.count("chat.stopStream") == 1
    stop = slack.fake.payloads("chat.stopStream")[-1]
    block = buttons(stop["blocks"])
    digest = block["block_id"].removeprefix("tk-feedback:")
    assert digest and "U1USER" not in block["block_id"]

    url = slack.fake.response_url("fb")
    before = value_of(await scrape(slack.http, metrics), "positive")
    assert await post_click(slack, click("positive", channel="C5", message_ts=answer.ts,
                                         block_id=block["block_id"], response_url=url)) == 200
    await slack.adapter.settle()
    after = await scrape(slack.http, metrics)
    assert value_of(after, "positive") == before + 1 and value_of(after, "negative") == 0
    [(name, body)] = slack.fake.responses
    assert name == "fb" and body["response_type"] == "ephemeral" and "Thanks" in body["text"]
    assert body.get("replace_original") is False, "the answer stays as it is"

    assert await post_click(slack, click("negative", channel="C5", message_ts=answer.ts,
                                         block_id=block["block_id"], response_url=url)) == 200
    assert await post_click(slack, click("bogus", channel="C5", message_ts=answer.ts,
                                         block_id=block["block_id"], response_url=url)) == 200
    await slack.adapter.settle()
    assert value_of(await scrape(slack.http, metrics), "negative") == 1
    assert len(slack.fake.responses) == 2, "a value that is not a button's is ignored"

    out = io.StringIO()
    assert await admin_main(slack.runtime, ["stats", "--json"], out=out) == 0
    assert json.loads(out.getvalue())["feedback"] == {"slack": {"positive": 1, "negative": 1}}
    out = io.StringIO()
    assert await admin_main(slack.runtime, ["stats"], out=out) == 0
    assert "slack +1 -1" in out.getvalue()


async def test_a_posted_answer_carries_its_text_and_the_buttons_in_its_last_message(
    slack: Slack, fake_openai: FakeOpenAI
) -> None:
    assert await slack.event(event_envelope(dm_event("hi there", channel="D9"))) == 200
    [answer] = await slack.answers("D9", None)
    await slack.adapter.settle()
    final = [c for c in slack.fake.calls if c.method in ("chat.postMessage", "chat.update")][-1]
    blocks = final.payload["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    buttons(blocks)
    assert blocks[0] == {"type": "section", "text": {"type": "mrkdwn", "text": answer.text}}
    assert answer.text.endswith("hi there"), "the text stays the notification's and the fallback"


def test_long_last_parts_are_split_into_sections_within_slacks_limit() -> None:
    blocks = feedback_blocks("abc", "word " * 1500)
    sections = [b for b in blocks if b["type"] == "section"]
    assert len(sections) == 3 and all(len(s["text"]["text"]) <= 3000 for s in sections)
    assert blocks[-1]["block_id"] == "tk-feedback:abc"
    assert feedback_blocks("abc", None)[0]["type"] == "context_actions"


def component_click(fake: FakeDiscord, custom_id: str, message: JSON) -> JSON:
    """An INTERACTION_CREATE for a button click (type 3) on one of the bot's messages."""
    channel = fake.dm_channel_for(fake.alice)
    return {
        "id": dp.snowflake(), "application_id": fake.application_id, "type": 3,
        "data": {"custom_id": custom_id, "component_type": 2}, "channel_id": channel["id"], "channel": channel,
        "user": fake.alice, "message": message, "token": f"itok-{dp.snowflake()}", "version": 1,
        "app_permissions": "0", "locale": "en-US", "entitlements": [], "attachment_size_limit": 8388608,
        "authorizing_integration_owners": {"0": fake.alice["id"]}, "context": 1,
    }


async def test_a_discord_answer_ends_with_two_buttons_and_a_click_is_counted_and_thanked(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    adapter = await start_bot()
    sent = await fake_discord.send_dm("hello there")
    [answer] = await wait_answer(fake_discord, sent["channel_id"])
    channel = sent["channel_id"]
    edit = await fake_discord.wait_for(lambda: next(  # in the final render: the post, or the last edit
        (c for c in [*fake_discord.find("POST", rf"/channels/{channel}/messages"),
                     *fake_discord.find("PATCH", rf"/channels/{channel}/messages/{answer['id']}")]
         if c.json and c.json.get("components")), None))
    [row] = edit.json["components"]
    ids = [button["custom_id"] for button in row["components"]]
    assert [i.split(":")[1] for i in ids] == ["positive", "negative"]
    assert all(i.startswith("tk-feedback:") and fake_discord.alice["id"] not in i for i in ids)

    registry = adapter.core.metrics.registry
    labels = {"platform": "discord", "value": "positive"}
    before = registry.get_sample_value("threadkeeper_feedback_total", labels) or 0.0
    click = component_click(fake_discord, ids[0], answer)
    await fake_discord.dispatch("INTERACTION_CREATE", click)
    path = rf"/interactions/{click['id']}/{click['token']}/callback"
    [callback] = await fake_discord.wait_for(lambda: fake_discord.find("POST", path) or None)
    assert callback.json["type"] == 4 and callback.json["data"]["flags"] & 64, "answered at once, privately"
    assert "Thanks" in callback.json["data"]["content"]
    assert registry.get_sample_value("threadkeeper_feedback_total", labels) == before + 1
    counts = await adapter.core.store.feedback_counts()
    assert counts.get("discord:positive") == 1
