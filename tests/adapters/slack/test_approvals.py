"""Approving a tool call in Slack: the asker's ephemeral prompt, their click (at any worker), and no click.

The real Bolt app in HTTP mode behind the loopback Slack, the real openai SDK against the fake OpenAI (whose
MCP tool ``create_ticket`` is not in ``allowed_tools``, so it asks for approval), real Redis shared by two
adapters (two workers): the click is signed and posted to the other one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from adapters.kit.approvals import FAILED, GONE, NOT_YOURS
from adapters.slack.approvals import APPROVE_ACTION, DECLINE_ACTION
from bot.assistants.tools import REASONS
from bot.runtime import Runtime
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.openai_tools import DECLINED_REPLY
from tests.fakes.slack_server import BOT_USER_ID, TEAM_ID, event_envelope, mention_event, sign
from tests.support.profiles import write_profiles
from tests.support.slack import SECRET, Slack, StartSlack

JSON = dict[str, Any]
FOUND = "Your ticket is open."
ASKER = "U1USER"
PROFILES = """
profiles:
  - match: {platform: slack, channel: C8}
    tools:
      - {type: mcp, server_label: docs, server_url: "https://mcp.example.test/sse", allowed_tools: [search_docs]}
"""


@pytest.fixture
def profiles_file(tmp_path: Path) -> str:
    return write_profiles(tmp_path, PROFILES)


@pytest.fixture(autouse=True)
def needs_approval(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply = lambda _text, _items: FOUND
    fake_openai.mcp_tool = "create_ticket"  # not in allowed_tools: the server asks for approval
    fake_openai.mcp_arguments = json.dumps({"title": "<!here> <@U0BOSS> `rm -rf` " + "x" * 400})


def turns(fake: FakeOpenAI) -> list[JSON]:
    return [r.json or {} for r in fake.requests if r.method == "POST" and r.path == "/v1/responses"]


def calls(runtime: Runtime, outcome: str) -> float:
    return runtime.metrics.registry.get_sample_value("threadkeeper_tool_calls_total",
                                                     {"tool": "mcp:docs", "outcome": outcome}) or 0.0


def blocks_of(payload: JSON) -> list[JSON]:
    blocks = payload["blocks"]
    return json.loads(blocks) if isinstance(blocks, str) else list(blocks)


def click(action_id: str, token: str, *, user: str, response_url: str, channel: str = "C8") -> JSON:
    """A ``block_actions`` payload for a click on an ephemeral message's button, shaped like Slack's."""
    return {
        "type": "block_actions", "team": {"id": TEAM_ID, "domain": "fake"},
        "user": {"id": user, "username": "someone", "team_id": TEAM_ID}, "api_app_id": "A0APP",
        "container": {"type": "message", "message_ts": "1700000009.000100", "channel_id": channel,
                      "is_ephemeral": True},
        "channel": {"id": channel, "name": "support"}, "trigger_id": "1.2.abc", "response_url": response_url,
        "actions": [{"type": "button", "action_id": action_id, "block_id": "tk-approval", "value": token,
                     "action_ts": "1700000010.000100"}],
    }


async def post_click(slack: Slack, payload: JSON) -> int:
    body = urlencode({"payload": json.dumps(payload)})
    status, _ = await slack.post(body, "application/x-www-form-urlencoded", sign(body, SECRET))
    return status


async def ask_in_c8(slack: Slack) -> tuple[JSON, JSON]:
    """Mention the bot in C8; the event and the ephemeral prompt it brings."""
    event = mention_event(f"<@{BOT_USER_ID}> open a ticket", channel="C8", user=ASKER)
    assert await slack.event(event_envelope(event)) == 200
    await slack.fake.wait_for(lambda: slack.fake.count("chat.postEphemeral") > 0)
    [prompt] = slack.fake.payloads("chat.postEphemeral")
    return event, prompt


def waiting_shown(slack: Slack) -> bool:
    payloads = [*slack.fake.payloads("chat.startStream"), *slack.fake.payloads("chat.appendStream")]
    return any(c.get("title") == "waiting for your approval…" for p in payloads for c in p.get("chunks") or [])


async def test_the_asker_approves_at_another_worker_and_the_answer_completes(
    start_slack: StartSlack, fake_openai: FakeOpenAI, profiles_file: str
) -> None:
    waiting = await start_slack(profiles_file=profiles_file)
    other = await start_slack(profiles_file=profiles_file)  # another worker on the same Redis
    event, prompt = await ask_in_c8(waiting)
    assert (prompt["channel"], prompt["user"], prompt["thread_ts"]) == ("C8", ASKER, event["ts"])
    section, actions = blocks_of(prompt)
    text = section["text"]["text"]
    assert text.startswith("Approve a tool call? `docs` wants to run `create_ticket` with `{")
    assert "&lt;!here&gt; &lt;@U0BOSS&gt;" in text and "<!here>" not in text and "<@" not in text
    assert text.count("`") == 6 and text.endswith("…`") and len(text) < 420, "quoted, short, nothing escapes"
    approve, decline = actions["elements"]
    assert (approve["action_id"], decline["action_id"]) == (APPROVE_ACTION, DECLINE_ACTION)
    token = approve["value"]
    assert token == decline["value"] and len(token) >= 20 and ASKER not in token
    await waiting.fake.wait_for(lambda: waiting_shown(waiting))

    url = other.fake.response_url("approval")
    assert await post_click(other, click(APPROVE_ACTION, token, user="U2OTHER", response_url=url)) == 200
    await other.fake.wait_for(lambda: len(other.fake.responses) == 1)
    [(_, refused)] = other.fake.responses
    assert refused["text"] == NOT_YOURS and refused["replace_original"] is False
    assert len(turns(fake_openai)) == 1, "someone else's click changes nothing"

    assert await post_click(other, click(APPROVE_ACTION, token, user=ASKER, response_url=url)) == 200
    [answer] = await waiting.answers("C8", event["ts"])
    assert answer.text == FOUND
    first, follow_up = turns(fake_openai)
    [request] = fake_openai.approval_requests.values()
    assert follow_up["input"] == [{"type": "mcp_approval_response", "approval_request_id": request["id"],
                                   "approve": True}]
    assert follow_up["conversation"] == first["conversation"]
    await other.adapter.settle()
    decided = other.fake.responses[1][1]
    assert decided["text"] == "Approved: `docs: create_ticket`" and decided["replace_original"] is True
    assert calls(waiting.runtime, "approved") == 1 and calls(waiting.runtime, "completed") == 1

    assert await post_click(waiting, click(DECLINE_ACTION, token, user=ASKER, response_url=url)) == 200
    await waiting.adapter.settle()
    assert other.fake.responses[2][1]["text"] == GONE, "decided once"
    assert len(turns(fake_openai)) == 2


async def test_the_asker_declines_and_the_model_is_told(
    start_slack: StartSlack, fake_openai: FakeOpenAI, profiles_file: str
) -> None:
    slack = await start_slack(profiles_file=profiles_file)
    event, prompt = await ask_in_c8(slack)
    token = blocks_of(prompt)[1]["elements"][1]["value"]
    url = slack.fake.response_url("approval")
    assert await post_click(slack, click(DECLINE_ACTION, token, user=ASKER, response_url=url)) == 200
    [answer] = await slack.answers("C8", event["ts"])
    assert answer.text == DECLINED_REPLY
    [declined] = turns(fake_openai)[-1]["input"]
    assert declined["approve"] is False and declined["reason"] == REASONS["declined"], "the model is told"
    await slack.adapter.settle()
    assert slack.fake.responses[-1][1]["text"] == "Declined: `docs: create_ticket`"
    assert calls(slack.runtime, "declined") == 1 and calls(slack.runtime, "completed") == 0


async def test_no_click_in_time_is_declined_and_the_answer_goes_on(
    start_slack: StartSlack, fake_openai: FakeOpenAI, profiles_file: str
) -> None:
    slack = await start_slack(profiles_file=profiles_file, tool_approval_timeout=0.3)
    event, prompt = await ask_in_c8(slack)
    [answer] = await slack.answers("C8", event["ts"])
    assert answer.text == DECLINED_REPLY, "the user sees the answer continue"
    [expired] = turns(fake_openai)[-1]["input"]
    assert expired["approve"] is False and expired["reason"] == REASONS["expired"], "the model is told"
    assert calls(slack.runtime, "expired") == 1

    token = blocks_of(prompt)[1]["elements"][0]["value"]
    url = slack.fake.response_url("late")
    assert await post_click(slack, click(APPROVE_ACTION, token, user=ASKER, response_url=url)) == 200
    await slack.adapter.settle()
    [(_, late)] = slack.fake.responses
    assert late["text"] == GONE and late["replace_original"] is True
    assert len(turns(fake_openai)) == 2, "a late approval runs nothing"


async def test_a_prompt_that_cannot_be_shown_declines_and_the_answer_goes_on(
    start_slack: StartSlack, fake_openai: FakeOpenAI, profiles_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    slack = await start_slack(profiles_file=profiles_file)
    slack.fake.fail_next("chat.postEphemeral", "user_not_in_channel")
    event = mention_event(f"<@{BOT_USER_ID}> open a ticket", channel="C8", user=ASKER)
    with caplog.at_level(logging.WARNING, logger="threadkeeper.core"):
        assert await slack.event(event_envelope(event)) == 200
        [answer] = await slack.answers("C8", event["ts"])
    assert answer.text == DECLINED_REPLY
    [failed] = turns(fake_openai)[-1]["input"]
    assert failed["approve"] is False and failed["reason"] == REASONS["failed"], "not 'the user declined'"
    assert calls(slack.runtime, "failed") == 1 and calls(slack.runtime, "declined") == 0
    [warning] = [r.getMessage() for r in caplog.records if r.name == "threadkeeper.core"]
    assert warning.startswith("could not show the approval prompt for docs: create_ticket")


async def test_the_decided_prompt_escapes_the_tool_name_the_mcp_server_gave(
    start_slack: StartSlack, fake_openai: FakeOpenAI, profiles_file: str
) -> None:
    fake_openai.mcp_tool = "create_<!channel>_&_<@U0BOSS>"
    slack = await start_slack(profiles_file=profiles_file)
    event, prompt = await ask_in_c8(slack)
    token = blocks_of(prompt)[1]["elements"][0]["value"]
    url = slack.fake.response_url("approval")
    assert await post_click(slack, click(APPROVE_ACTION, token, user=ASKER, response_url=url)) == 200
    await slack.answers("C8", event["ts"])
    await slack.adapter.settle()
    decided = slack.fake.responses[-1][1]["text"]
    assert decided == "Approved: `docs: create_&lt;!channel&gt;_&amp;_&lt;@U0BOSS&gt;`", "no mention survives"



async def test_a_click_at_a_worker_whose_redis_is_down_is_told_so_in_one_line(
    start_slack: StartSlack, fake_openai: FakeOpenAI, profiles_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    waiting = await start_slack(profiles_file=profiles_file, tool_approval_timeout=0.5)
    down = await start_slack(profiles_file=profiles_file, redis_url="redis://127.0.0.1:9/12")  # nothing listens
    event, prompt = await ask_in_c8(waiting)
    token = blocks_of(prompt)[1]["elements"][0]["value"]
    url = down.fake.response_url("approval")
    with caplog.at_level(logging.INFO):
        assert await post_click(down, click(APPROVE_ACTION, token, user=ASKER, response_url=url)) == 200
        await down.adapter.settle()
    [(_, said)] = down.fake.responses
    assert said["text"] == FAILED and said["replace_original"] is False, "one sentence, the prompt kept"
    mine = [r for r in caplog.records if r.name in ("threadkeeper.slack", "threadkeeper.core")
            and r.levelno >= logging.WARNING]  # (pacing says once that it paces alone)
    assert [r.getMessage().split(":")[0] for r in mine] == ["could not record an approval click"]
    assert not any(r.exc_info for r in caplog.records), "no traceback"
    [answer] = await waiting.answers("C8", event["ts"])
    assert answer.text == DECLINED_REPLY and calls(waiting.runtime, "expired") == 1
