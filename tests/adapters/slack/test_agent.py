"""Slack's agent experience, end to end through the real Bolt app (signed HTTP requests, loopback fakes).

Suggested prompts when the user opens the agent, titles for new threads, the rotating loading status, and the
channel the user is looking at offered to the model (named, its newest messages quoted) only when they say
"this channel" and the allowlists permit that channel.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError

from adapters.slack.agent import SUGGESTED_PROMPTS, Recent, refers_to_this_channel, title_for
from adapters.slack.progress import LOADING_MESSAGES, THINKING
from bot.domain import ThreadKey
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import BOT_USER_ID, TEAM_ID, dm_event, event_envelope, mention_event
from tests.support.slack import Slack, StartSlack

JSON = dict[str, Any]


def home_opened(*, tab: str = "messages", user: str = "U1USER", channel: str = "D7") -> JSON:
    return {"type": "app_home_opened", "user": user, "channel": channel, "tab": tab, "event_ts": "1710000300.000001"}


def context_changed(channel: str, *, user: str = "U1USER") -> JSON:
    """``app_context_changed`` as Slack sends it under ``agent_view`` (entities ordered by relevance)."""
    entities = [{"type": "slack#/types/channel_id", "value": channel, "team_id": TEAM_ID}] if channel else []
    return {"type": "app_context_changed", "user": user, "event_ts": "1710000300.000002",
            "context": {"entities": entities} if entities else {}}


def model_inputs(fake: FakeOpenAI) -> list[str]:
    """What each request to the model carried, as text."""
    return [json.dumps(r.json) for r in fake.requests if r.method == "POST" and r.path == "/v1/responses"]


@pytest.fixture
async def agent(start_slack: StartSlack) -> Slack:
    return await start_slack(slack_agent_view=True)


# -- suggested prompts ---------------------------------------------------------------------------------------
async def test_opening_the_agent_sets_the_default_prompts_for_the_conversation(agent: Slack) -> None:
    assert await agent.event(event_envelope(home_opened(tab="home"))) == 200
    assert await agent.event(event_envelope(home_opened())) == 200
    await agent.adapter.settle()
    [call] = agent.fake.payloads("assistant.threads.setSuggestedPrompts")
    assert call["channel_id"] == "D7" and "thread_ts" not in call, "agent_view: the conversation, not a thread"
    assert agent.fake.prompts[("D7", "")] == SUGGESTED_PROMPTS


async def test_opening_the_agent_offers_the_profiles_prompts(start_slack: StartSlack, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.yml"
    prompts = [{"title": f"Prompt {i}", "message": f"Do thing {i}."} for i in range(6)]
    items = "".join(f"      - {{title: {p['title']}, message: {p['message']}}}\n" for p in prompts)
    profiles.write_text(f"profiles:\n  - match: {{platform: slack, workspace: {TEAM_ID}, channel: D9}}\n"
                        f"    suggested_prompts:\n{items}", encoding="utf-8")
    slack = await start_slack(slack_agent_view=True, profiles_file=str(profiles))
    assert await slack.event(event_envelope(home_opened(channel="D9"))) == 200
    assert await slack.event(event_envelope(home_opened(channel="D8", user="U2OTHER"))) == 200
    await slack.adapter.settle()
    assert slack.fake.prompts[("D9", "")] == prompts[:4], "the profile's, as many as Slack shows"
    assert slack.fake.prompts[("D8", "")] == SUGGESTED_PROMPTS, "no profile there: the defaults"


# -- each top-level DM is its own thread, named after its first message ---------------------------------------------
async def test_a_top_level_dm_opens_a_thread_named_once_with_a_loading_status(
    agent: Slack, fake_openai: FakeOpenAI
) -> None:
    first = dm_event("How do I *rotate* the <https://x.test|API> keys every month safely?", channel="D7")
    envelope = event_envelope(first)
    assert await agent.event(envelope) == 200
    [answer] = await agent.answers("D7", first["ts"])
    assert answer.text.startswith("echo: How do I") and answer.streamed, "answered in the thread it opens"
    await agent.adapter.settle()
    assert agent.fake.titles == {("D7", first["ts"]): "How do I rotate the API…"}
    assert [s for *_, s in agent.fake.statuses] == [THINKING, ""], "set while the model works, then cleared"
    assert agent.fake.loading[0] == list(LOADING_MESSAGES) and agent.fake.statuses[0][1] == first["ts"]

    again = dm_event("and yearly?", channel="D7", thread_ts=first["ts"])
    assert await agent.event(event_envelope(again)) == 200
    await agent.answers("D7", first["ts"], count=2)
    await agent.adapter.settle()
    assert agent.fake.count("assistant.threads.setTitle") == 1, "named once, by its first message"
    assert len(fake_openai.active_conversations) == 1, "one conversation per person under the default scope"

    assert await agent.event(envelope, retry=1) == 200
    await agent.adapter.settle()
    assert agent.fake.count("assistant.threads.setTitle") == 1, "a redelivery names nothing"
    assert len(agent.fake.in_thread("D7", first["ts"])) == 2 and len(model_inputs(fake_openai)) == 2


async def test_without_agent_view_a_top_level_dm_is_answered_at_the_top_level_untitled(slack: Slack) -> None:
    event = dm_event("hello", channel="D7")
    assert await slack.event(event_envelope(event)) == 200
    await slack.answers("D7", None)
    await slack.adapter.settle()
    assert slack.fake.count("assistant.threads.setTitle") == 0 and slack.fake.statuses == []


async def test_agent_events_with_agent_view_off_warn_the_operator_once(
    slack: Slack, caplog: pytest.LogCaptureFixture
) -> None:
    odd = context_changed("C0LOOKED")
    odd["context"]["entities"].insert(0, "not an entity")
    for event in (odd, context_changed("C0OTHER")):
        assert await slack.event(event_envelope(event)) == 200
    warned = [r for r in caplog.records if "SLACK_AGENT_VIEW is off" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelname == "WARNING"
    assert slack.adapter.agent.views.get((TEAM_ID, "U1USER")) == "C0OTHER"


async def test_an_assistant_pane_thread_is_named_after_its_first_message(slack: Slack) -> None:
    thread = "1710000200.000000"
    started = {"type": "assistant_thread_started", "event_ts": "1710000200.000001",
               "assistant_thread": {"user_id": "U1USER", "channel_id": "D7", "thread_ts": thread,
                                    "context": {"channel_id": "C1CHAN", "team_id": TEAM_ID}}}
    assert await slack.event(event_envelope(started)) == 200
    for n, text in enumerate(("plan my week", "and the weekend"), 1):
        assert await slack.event(event_envelope(dm_event(text, channel="D7", thread_ts=thread))) == 200
        await slack.answers("D7", thread, count=n + 1)  # the greeting, then the answers
        await slack.adapter.settle()
    assert slack.fake.titles == {("D7", thread): "plan my week"}
    assert slack.fake.count("assistant.threads.setTitle") == 1


async def test_a_status_cut_short_by_shutdown_is_still_cleared(agent: Slack) -> None:
    agent.fake.stall_next("assistant.threads.setStatus", 30.0)  # set at Slack, its answer never comes in time
    event = dm_event("hello", channel="D7")
    assert await agent.event(event_envelope(event)) == 200
    await agent.fake.wait_for(lambda: bool(agent.fake.statuses))
    await agent.adapter.drain(0.2)  # the answer is cancelled while it waits for Slack
    assert agent.fake.statuses == [("D7", event["ts"], THINKING), ("D7", event["ts"], "")], "never left spinning"


async def test_a_status_is_cleared_when_the_answer_fails(agent: Slack, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(400, message="the model refused", path_prefix="/v1/responses")
    event = dm_event("hello", channel="D7")
    assert await agent.event(event_envelope(event)) == 200
    [sentence] = await agent.answers("D7", event["ts"])
    await agent.adapter.settle()
    assert not sentence.text.startswith("echo:"), "the user is told it failed"
    assert agent.fake.statuses == [("D7", event["ts"], THINKING), ("D7", event["ts"], "")], "never left spinning"


# -- status in channel threads ---------------------------------------------------------------------------------
async def test_a_channel_thread_shows_the_loading_status_where_the_workspace_allows_it(agent: Slack) -> None:
    one = mention_event(f"<@{BOT_USER_ID}> hi", channel="C7")
    assert await agent.event(event_envelope(one)) == 200
    await agent.answers("C7", one["ts"])
    await agent.adapter.settle()
    assert agent.fake.statuses == [("C7", one["ts"], THINKING), ("C7", one["ts"], "")]

    agent.fake.status_in_channels = False
    for n, channel in enumerate(("C8", "C9")):
        event = mention_event(f"<@{BOT_USER_ID}> hi {n}", channel=channel)
        assert await agent.event(event_envelope(event)) == 200
        await agent.answers(channel, event["ts"])
        await agent.adapter.settle()
    assert agent.fake.count("assistant.threads.setStatus") == 3, "refused once in channels: not asked again"
    assert len(agent.fake.statuses) == 2


# -- "this channel" ----------------------------------------------------------------------------------------------
async def test_this_channel_is_offered_to_the_model_only_when_the_user_says_it(
    agent: Slack, fake_openai: FakeOpenAI
) -> None:
    agent.fake.user_says("we ship on friday", channel="C0LOOKED")
    root = agent.fake.user_says("no, monday", user="U2OTHER", channel="C0LOOKED")
    agent.fake.user_says("a reply inside a thread", channel="C0LOOKED", thread_ts=root["ts"])
    assert await agent.event(event_envelope(context_changed("C0LOOKED"))) == 200
    assert await agent.event(event_envelope(dm_event("summarise this channel please", channel="D7"))) == 200
    await agent.adapter.settle()
    assert await agent.event(event_envelope(dm_event("what is a channel?", channel="D7"))) == 200
    await agent.adapter.settle()
    hinted, plain = model_inputs(fake_openai)
    assert "<#C0LOOKED>" in hinted and "in the user's message is the channel they have open" in hinted
    assert "we ship on friday" in hinted and "no, monday" in hinted and "inside a thread" not in hinted
    assert "C0LOOKED" not in plain and "friday" not in plain
    assert [p["channel"] for p in agent.fake.payloads("conversations.history")] == ["C0LOOKED"]

    agent.fake.user_says("actually tuesday", channel="C0LOOKED")
    assert await agent.event(event_envelope(dm_event("and now, in this channel?", channel="D7"))) == 200
    await agent.adapter.settle()
    again = model_inputs(fake_openai)[-1]
    assert "actually tuesday" in again and "friday" not in again, "only what was written since"
    assert agent.fake.payloads("conversations.history")[-1]["oldest"] == root["ts"]

    assert await agent.event(event_envelope(context_changed(""))) == 200  # looking at nothing now
    assert await agent.event(event_envelope(dm_event("and this channel?", channel="D7"))) == 200
    await agent.adapter.settle()
    assert "C0LOOKED" not in model_inputs(fake_openai)[-1]

    # Slack's own example of the event names the person only in the envelope's authorizations
    anonymous = context_changed("C0AGAIN")
    del anonymous["user"]
    envelope = event_envelope(anonymous)
    envelope["authorizations"] = [{"enterprise_id": None, "team_id": TEAM_ID, "user_id": "U1USER", "is_bot": False,
                                   "is_enterprise_install": False}]
    assert await agent.event(envelope) == 200
    assert await agent.event(event_envelope(dm_event("and this channel?", channel="D7"))) == 200
    await agent.adapter.settle()
    assert "<#C0AGAIN>" in model_inputs(fake_openai)[-1]

    mention = mention_event(f"<@{BOT_USER_ID}> summarise this channel", channel="C7")
    assert await agent.event(event_envelope(mention)) == 200
    await agent.adapter.settle()
    assert "C0AGAIN" not in model_inputs(fake_openai)[-1], "written in a channel, \"this channel\" is that one"


async def test_the_channel_note_is_material_not_the_users_words(start_slack: StartSlack,
                                                                fake_openai: FakeOpenAI) -> None:
    slack = await start_slack(slack_agent_view=True, max_input_chars=60)
    slack.fake.user_says("we ship on friday", channel="C0LOOKED")
    assert await slack.event(event_envelope(context_changed("C0LOOKED"))) == 200
    words = "summarise this channel ".ljust(60, ".")  # exactly the limit: the note must not push it over
    event = dm_event(words, channel="D7")
    assert await slack.event(event_envelope(event)) == 200
    [answer] = await slack.answers("D7", event["ts"])
    await slack.adapter.settle()
    assert answer.text.startswith("echo: ") and answer.text.endswith(words) and "too long" not in answer.text
    assert "<#C0LOOKED>" in model_inputs(fake_openai)[0] and "we ship on friday" in model_inputs(fake_openai)[0]
    kept = await slack.runtime.core.store.turns(ThreadKey("slack", TEAM_ID, "D7", "U1USER"))
    assert [t["text"] for t in kept if t["role"] == "user"] == [words], "only the user's words are kept"


async def test_the_assistant_pane_context_change_is_remembered_too(agent: Slack, fake_openai: FakeOpenAI) -> None:
    changed = {"type": "assistant_thread_context_changed", "event_ts": "1710000300.000003",
               "assistant_thread": {"user_id": "U1USER", "channel_id": "D7", "thread_ts": "1710000200.000000",
                                    "context": {"channel_id": "C0PANE", "team_id": TEAM_ID}}}
    assert await agent.event(event_envelope(changed)) == 200
    question = dm_event("what happened in this channel?", channel="D7", thread_ts="1710000200.000000")
    assert await agent.event(event_envelope(question)) == 200
    await agent.adapter.settle()
    assert "<#C0PANE>" in model_inputs(fake_openai)[0]
    assert agent.fake.count("chat.update") == 0, "Bolt's default would keep the context in message metadata"
    assert [p["channel"] for p in agent.fake.payloads("conversations.history")] == ["C0PANE"]


async def test_a_channel_the_allowlists_forbid_is_neither_named_nor_read(
    start_slack: StartSlack, fake_openai: FakeOpenAI
) -> None:
    slack = await start_slack(slack_agent_view=True, allowed_slack_channels="C0OPEN")
    slack.fake.user_says("the merger closes on friday", channel="C0SECRET")
    assert await slack.event(event_envelope(context_changed("C0SECRET"))) == 200
    assert await slack.event(event_envelope(dm_event("summarise this channel", channel="D7"))) == 200
    await slack.adapter.settle()
    [asked] = model_inputs(fake_openai)
    assert "C0SECRET" not in asked and "merger" not in asked and "not allowed to read" in asked
    assert not [c for c in slack.fake.calls if c.method.startswith("conversations.")]

    slack.fake.user_says("see you at 6", channel="D0PRIVATE")  # the user's DM with someone else
    assert await slack.event(event_envelope(context_changed("D0PRIVATE"))) == 200
    assert await slack.event(event_envelope(dm_event("summarise this channel", channel="D7"))) == 200
    await slack.adapter.settle()
    asked = model_inputs(fake_openai)[-1]
    assert "D0PRIVATE" not in asked and "see you" not in asked and "not allowed to read" in asked
    assert not [c for c in slack.fake.calls if c.method.startswith("conversations.")], "a DM is no pass here"

    assert await slack.event(event_envelope(context_changed("D7"))) == 200  # the agent's own DM: no note at all
    assert await slack.event(event_envelope(dm_event("what about this channel?", channel="D7"))) == 200
    await slack.adapter.settle()
    assert "This channel" not in model_inputs(fake_openai)[-1]


async def test_a_channel_the_bot_is_not_in_is_named_and_the_answer_goes_on(
    agent: Slack, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    agent.fake.not_in.add("C0ELSE")
    assert await agent.event(event_envelope(context_changed("C0ELSE"))) == 200
    event = dm_event("what is this channel about?", channel="D7")
    assert await agent.event(event_envelope(event)) == 200
    [answer] = await agent.answers("D7", event["ts"])
    await agent.adapter.settle()
    assert answer.text.endswith("what is this channel about?") and "<#C0ELSE>" in model_inputs(fake_openai)[0]
    assert "not_in_channel" in caplog.text


@pytest.mark.parametrize("error", ["ratelimited", "not_allowed", "invalid_arguments", "missing_scope"])
async def test_a_refused_agent_call_costs_one_log_line_and_never_the_answer(
    agent: Slack, caplog: pytest.LogCaptureFixture, error: str
) -> None:
    caplog.set_level("DEBUG", logger="threadkeeper.slack")
    for method in ("assistant.threads.setSuggestedPrompts", "assistant.threads.setTitle",
                   "assistant.threads.setStatus", "conversations.history"):
        agent.fake.fail_next(method, error)
    assert await agent.event(event_envelope(home_opened())) == 200
    assert await agent.event(event_envelope(context_changed("C0LOOKED"))) == 200
    event = dm_event("summarise this channel", channel="D7")
    assert await agent.event(event_envelope(event)) == 200
    [answer] = await agent.answers("D7", event["ts"])
    await agent.adapter.settle()
    assert answer.text.endswith("summarise this channel") and "<#C0LOOKED>" in answer.text
    lines = [r.getMessage() for r in caplog.records if r.name == "threadkeeper.slack" and "could not" in r.getMessage()]
    assert len(lines) == 4, lines  # prompts, title, status, the channel's messages: one line each
    assert agent.fake.count("assistant.threads.setStatus") == 1, "never shown: nothing to clear"


# -- plain functions and the fake's checks ------------------------------------------------------------------------
def test_titles_are_the_first_few_words_without_markup() -> None:
    assert title_for("hello") == "hello"
    assert title_for("<@U1> *please* fix `the` build on main today now") == "please fix the build on main…"
    assert title_for("a" * 100).endswith("…") and len(title_for("a" * 100)) == 60
    assert title_for("<@U1>") == "New conversation"


@pytest.mark.parametrize(("text", "refers"), [("summarise this channel", True), ("What's up in THIS  channel?", True),
                                               ("this channels list", False), ("summarise #general", False),
                                               ("in the channel", False)])
def test_only_this_channel_asks_for_the_hint(text: str, refers: bool) -> None:
    assert refers_to_this_channel(text) is refers


def test_remembered_views_expire_and_stay_bounded() -> None:
    now = [0.0]
    views: Recent[str] = Recent(10.0, 2, clock=lambda: now[0])
    views.put(("T", "U1"), "C1")
    views.put(("T", "U2"), "C2")
    views.put(("T", "U3"), "C3")
    assert views.get(("T", "U1")) is None and len(views) == 2, "the oldest goes beyond the bound"
    now[0] = 10.0
    assert views.get(("T", "U2")) is None, "expired"


async def test_the_fake_refuses_what_slack_refuses(agent: Slack) -> None:
    client = agent.adapter.client
    five = [{"title": f"t{i}", "message": f"m{i}"} for i in range(5)]
    for call in (client.assistant_threads_setSuggestedPrompts(channel_id="D7", prompts=five),
                 client.assistant_threads_setStatus(channel_id="D7", thread_ts="1.2", status="x",
                                                    loading_messages=[f"m{i}" for i in range(11)])):
        with pytest.raises(SlackApiError, match="invalid_arguments"):
            await call
    with pytest.raises(SlackApiError, match="not_allowed"):
        await client.assistant_threads_setTitle(channel_id="C7", thread_ts="1.2", title="x")
    assert agent.fake.prompts == {} and agent.fake.statuses == [] and agent.fake.titles == {}
