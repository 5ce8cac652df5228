"""Slack payload rules: what is answered, under which thread key, and where the reply goes."""

from __future__ import annotations

import pytest

from adapters.slack.parse import parse_event, parse_forget, strip_bot_mention, thread_key
from bot.domain import ThreadKey
from tests.fakes.slack_server import BOT_USER_ID, TEAM_ID, command_form, dm_event, event_envelope, mention_event


@pytest.mark.parametrize(
    ("scope", "thread_root", "expected"),
    [
        ("user", "1.2", ThreadKey("slack", "T1", "C1", "U1")),
        ("thread", "1.2", ThreadKey("slack", "T1", "C1/1.2", "U1")),
        ("thread", None, ThreadKey("slack", "T1", "C1", "U1")),
        ("channel", "1.2", ThreadKey("slack", "T1", "C1", "*")),
    ],
)
def test_thread_key_follows_the_scope(scope: str, thread_root: str | None, expected: ThreadKey) -> None:
    assert thread_key(scope, "T1", "C1", "U1", thread_root) == expected


def test_a_top_level_dm_is_answered_at_the_top_level_with_the_event_id_as_message_id() -> None:
    body = event_envelope(dm_event("hi", channel="D1", user="U7"), event_id="Ev123")
    parsed = parse_event(body, BOT_USER_ID, "user")
    assert parsed is not None
    assert parsed.incoming.key == ThreadKey("slack", TEAM_ID, "D1", "U7")
    assert parsed.incoming.message_id == "Ev123" and parsed.incoming.direct
    assert parsed.target.thread_ts is None and parsed.target.is_dm


def test_a_dm_in_an_ai_pane_thread_is_answered_in_that_thread_and_keyed_by_it_under_thread_scope() -> None:
    parsed = parse_event(event_envelope(dm_event("hi", channel="D1", thread_ts="5.5")), BOT_USER_ID, "thread")
    assert parsed is not None
    assert parsed.target.thread_ts == "5.5" and parsed.incoming.key.channel == "D1/5.5"


@pytest.mark.parametrize(("scope", "channel"), [("shared", "D1"), ("user", "D1"), ("thread", "D1/{ts}")])
def test_under_agent_view_a_top_level_dm_opens_its_own_thread(scope: str, channel: str) -> None:
    first = dm_event("hi", channel="D1", user="U7")
    parsed = parse_event(event_envelope(first), BOT_USER_ID, scope, agent_view=True)
    assert parsed is not None and parsed.opens_thread
    assert parsed.target.thread_ts == first["ts"] and parsed.incoming.key.channel == channel.format(ts=first["ts"])
    reply = dm_event("more", channel="D1", user="U7", thread_ts=first["ts"])
    again = parse_event(event_envelope(reply), BOT_USER_ID, scope, agent_view=True)
    assert again is not None and not again.opens_thread, "a message inside the thread opens nothing"
    assert again.incoming.key == parsed.incoming.key, "and continues the same conversation"
    mention = parse_event(event_envelope(mention_event(f"<@{BOT_USER_ID}> hi")), BOT_USER_ID, scope, agent_view=True)
    assert mention is not None and not mention.opens_thread


def test_a_mention_is_answered_in_its_own_thread_or_the_thread_it_is_in() -> None:
    top = mention_event(f"<@{BOT_USER_ID}> hi", channel="C1", ts="7.1")
    parsed = parse_event(event_envelope(top), BOT_USER_ID, "user")
    assert parsed is not None and parsed.target.thread_ts == "7.1" and not parsed.target.is_dm
    assert parsed.incoming.text == "hi"
    inner = mention_event(f"<@{BOT_USER_ID}> again", channel="C1", ts="7.9", thread_ts="7.1")
    parsed = parse_event(event_envelope(inner), BOT_USER_ID, "thread")
    assert parsed is not None and parsed.target.thread_ts == "7.1" and parsed.incoming.key.channel == "C1/7.1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"<@{BOT_USER_ID}> hello", "hello"),
        (f"hey <@{BOT_USER_ID}|threadkeeper> look", "hey look"),
        (f"<@{BOT_USER_ID}>\n```\n  indented code\n```", "```\n  indented code\n```"),
        (f"ask <@U2OTHER> too <@{BOT_USER_ID}>", "ask <@U2OTHER> too"),
    ],
)
def test_only_the_bots_own_mention_is_stripped(text: str, expected: str) -> None:
    assert strip_bot_mention(text, BOT_USER_ID) == expected


@pytest.mark.parametrize(
    "event",
    [
        dm_event("x", bot_id="B1"),
        dm_event("x", user=BOT_USER_ID),
        dm_event("x", subtype="message_changed"),
        dm_event("x", subtype="message_deleted"),
        dm_event("x", subtype="channel_join"),
        dm_event("x", channel_type="channel"),
        {"type": "reaction_added", "user": "U1", "channel": "C1", "ts": "1.1"},
    ],
)
def test_bots_edits_other_subtypes_and_non_dm_messages_are_ignored(event: dict[str, object]) -> None:
    assert parse_event(event_envelope(event), BOT_USER_ID, "user") is None


def test_a_file_share_is_still_a_person_writing() -> None:
    assert parse_event(event_envelope(dm_event("see file", subtype="file_share")), BOT_USER_ID, "user") is not None


def test_forget_arguments() -> None:
    one = parse_forget(command_form("/forget", "", channel="C4", response_url="http://x"), "user")
    assert one is not None and not one.everything and one.key == ThreadKey("slack", TEAM_ID, "C4", "U1USER")
    every = parse_forget(command_form("/forget", " ALL ", response_url="http://x"), "user")
    assert every is not None and every.everything
    assert parse_forget(command_form("/forget", "yesterday", response_url="http://x"), "user") is None
    shared = parse_forget(command_form("/forget", "", channel="C4", response_url="http://x"), "channel")
    assert shared is not None and shared.key.user == "*"
