"""The Slack adapter in HTTP mode, end to end through the real Bolt app.

Signed requests with real Slack payload shapes are posted to the running aiohttp server; the real
``AsyncWebClient`` talks to the loopback fake Slack Web API; the core runs on the real Redis and
the loopback fake OpenAI. Waiting is bounded and event driven (the fakes' recorded calls and
:meth:`SlackAdapter.settle`), never a fixed sleep. The adapter acknowledges an event only
once its listener has started the work, so after the HTTP answer ``settle`` sees that work.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from adapters.slack.mrkdwn import SLACK_TEXT_LIMIT, markdown_to_mrkdwn
from bot.errors import Unavailable
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import (
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    command_form,
    dm_event,
    event_envelope,
    mention_event,
    sign,
)
from tests.support.slack import SECRET, Slack, StartSlack


def responses(fake: FakeOpenAI) -> int:
    return fake.count("POST", "/v1/responses")


async def forget(slack: Slack, text: str, *, channel: str, url: str) -> None:
    """``/forget <text>`` in ``channel``, through to its one delayed response."""
    status, _ = await slack.command(command_form("/forget", text, channel=channel,
                                                 response_url=slack.fake.response_url(url)))
    assert status == 200
    await slack.fake.wait_for(lambda: len(slack.fake.responses) == 1)


async def test_dm_is_answered_in_the_dm(slack: Slack, fake_openai: FakeOpenAI) -> None:
    assert await slack.event(event_envelope(dm_event("hello there", channel="D42"))) == 200
    [answer] = await slack.answers("D42", None)
    assert answer.text == "echo: hello there"
    await slack.adapter.settle()
    assert responses(fake_openai) == 1 and len(fake_openai.conversations) == 1
    post = slack.fake.payloads("chat.postMessage")[0]
    assert post["channel"] == "D42" and "thread_ts" not in post


async def test_mention_is_answered_in_its_thread_by_streaming(slack: Slack, fake_openai: FakeOpenAI) -> None:
    event = mention_event(f"<@{BOT_USER_ID}> what is **up**?", channel="C7")
    assert await slack.event(event_envelope(event)) == 200
    [answer] = await slack.answers("C7", event["ts"])
    # THREAD_SCOPE's default is now "shared" (issue 15): a channel thread's turns carry their speaker's name.
    name = slack.fake.name_of("U1USER")
    assert answer.streamed and answer.text == f"echo: {name}: what is **up**?"
    start = slack.fake.payloads("chat.startStream")[0]
    assert start["recipient_user_id"] == "U1USER" and start["recipient_team_id"] == TEAM_ID

    reply = mention_event(f"and <@{BOT_USER_ID}> more", channel="C7", thread_ts=event["ts"])
    assert await slack.event(event_envelope(reply)) == 200
    _, second = await slack.answers("C7", event["ts"], count=2)
    assert second.text == f"echo: {name}: and more"
    await slack.adapter.settle()
    assert len(fake_openai.conversations) == 1, "one conversation per Slack thread by default"
    assert slack.fake.count("chat.postMessage") == 0


async def test_thread_scope_gives_each_slack_thread_its_own_conversation(
    start_slack: StartSlack, fake_openai: FakeOpenAI
) -> None:
    slack = await start_slack(thread_scope="thread")
    one = mention_event(f"<@{BOT_USER_ID}> one", channel="C1")
    two = mention_event(f"<@{BOT_USER_ID}> two", channel="C1")
    for event in (one, two):
        assert await slack.event(event_envelope(event)) == 200
    await slack.answers("C1", one["ts"])
    await slack.answers("C1", two["ts"])
    await slack.adapter.settle()
    assert len(fake_openai.conversations) == 2

    await forget(slack, "", channel="C1", url="scoped")
    assert "2 conversations" in slack.fake.responses[0][1]["text"]
    assert all(c.deleted for c in fake_openai.conversations.values()), "/forget in a channel covers its threads"


async def test_forget_answers_ephemerally_then_the_next_message_starts_a_new_thread(
    slack: Slack, fake_openai: FakeOpenAI
) -> None:
    assert await slack.event(event_envelope(dm_event("remember 42", channel="D5"))) == 200
    await slack.answers("D5", None)
    await slack.adapter.settle()
    [first_conversation] = fake_openai.conversations

    fake_openai.latency = 0.5  # the forget takes a while on the provider's side: the ack must not wait
    status, body = await slack.command(command_form("/forget", "", channel="D5",
                                                    response_url=slack.fake.response_url("forget")))
    assert (status, body) == (200, "")
    assert slack.fake.responses == [], "acknowledged before the work was done"
    await slack.fake.wait_for(lambda: len(slack.fake.responses) == 1)
    name, reply = slack.fake.responses[0]
    assert name == "forget" and reply["response_type"] == "ephemeral"
    assert reply["text"].startswith("Done: I forgot our conversation here.")
    assert fake_openai.conversations[first_conversation].deleted
    fake_openai.latency = 0.0

    assert await slack.event(event_envelope(dm_event("what did I say?", channel="D5"))) == 200
    await slack.answers("D5", None, count=2)
    await slack.adapter.settle()
    assert len(fake_openai.conversations) == 2 and len(fake_openai.active_conversations) == 1
    assert slack.fake.count("chat.postEphemeral") == 0


async def test_forget_all_erases_every_thread_of_the_caller(slack: Slack, fake_openai: FakeOpenAI) -> None:
    mention = mention_event(f"<@{BOT_USER_ID}> hi", channel="C9")
    for envelope in (event_envelope(dm_event("hi", channel="D9")), event_envelope(mention),
                     event_envelope(dm_event("hi", channel="D10", user="U2OTHER"))):
        assert await slack.event(envelope) == 200
    await slack.adapter.settle()
    assert len(fake_openai.active_conversations) == 3

    await forget(slack, "all", channel="C9", url="all")
    assert slack.fake.responses[0][1]["text"] == "Done: I forgot all your conversations in this workspace (2)."
    assert len(fake_openai.active_conversations) == 1, "the other user's thread stays"

    status, _ = await slack.command(command_form("/forget", "everything please",
                                                 response_url=slack.fake.response_url("usage")))
    assert status == 200
    await slack.fake.wait_for(lambda: len(slack.fake.responses) == 2)
    assert "/forget all" in slack.fake.responses[1][1]["text"]


async def test_a_retried_event_gets_no_second_answer(slack: Slack, fake_openai: FakeOpenAI) -> None:
    envelope = event_envelope(dm_event("only once", channel="D3"))
    assert await slack.event(envelope) == 200
    await slack.answers("D3", None)
    assert await slack.event(envelope, retry=1) == 200
    await slack.adapter.settle()
    assert len(slack.fake.in_thread("D3", None)) == 1
    assert responses(fake_openai) == 1


async def test_a_retry_while_the_first_answer_is_in_progress_gets_no_second_answer(
    slack: Slack, fake_openai: FakeOpenAI
) -> None:
    fake_openai.latency = 0.5
    event = dm_event("slow one", channel="D4", thread_ts="1700000001.000001")  # an AI-app pane thread
    envelope = event_envelope(event)
    assert await slack.event(envelope) == 200
    assert slack.fake.in_thread("D4", "1700000001.000001") == [], "acknowledged before the answer"
    await slack.fake.wait_for(lambda: len(slack.fake.statuses) == 1)
    assert slack.fake.statuses[0] == ("D4", "1700000001.000001", "thinking…")
    assert await slack.event(envelope, retry=1) == 200
    assert await slack.event(envelope, retry=2) == 200
    await slack.adapter.settle()
    [answer] = slack.fake.in_thread("D4", "1700000001.000001")
    assert answer.text == "echo: slow one"
    assert responses(fake_openai) == 1
    assert [s for _, _, s in slack.fake.statuses] == ["thinking…", ""], "retries never touch the status"


@pytest.mark.parametrize("case", ["wrong secret", "stale timestamp", "unsigned"])
async def test_bad_or_stale_signatures_get_401_and_no_work(
    slack: Slack, fake_openai: FakeOpenAI, case: str
) -> None:
    envelope = event_envelope(dm_event("let me in"))
    if case == "unsigned":
        status, _ = await slack.post(json.dumps(envelope), "application/json", {})
    elif case == "wrong secret":
        status = await slack.event(envelope, secret="not-the-secret")
    else:
        status = await slack.event(envelope, timestamp=int(time.time()) - 6 * 60)
    assert status == 401
    assert slack.adapter.events_received == 0
    assert [c.method for c in slack.fake.calls] == ["auth.test"], "only the start-up token check"
    assert fake_openai.calls == []


async def test_bots_own_messages_edits_and_other_subtypes_are_ignored(
    slack: Slack, fake_openai: FakeOpenAI
) -> None:
    ignored = [
        dm_event("from another bot", bot_id="B9OTHER", bot_profile={"id": "B9OTHER", "name": "otherbot"}),
        dm_event("beep", user=BOT_USER_ID, bot_id=BOT_ID),
        dm_event("bot message", subtype="bot_message", bot_id="B9OTHER"),
        {"type": "message", "subtype": "message_changed", "channel": "D1DM", "channel_type": "im",
         "ts": "1710000100.000001", "event_ts": "1710000100.000001", "hidden": True,
         "message": {"type": "message", "user": "U1USER", "text": "edited", "ts": "1710000000.000001"},
         "previous_message": {"type": "message", "user": "U1USER", "text": "orig", "ts": "1710000000.000001"}},
        {"type": "message", "subtype": "message_deleted", "channel": "D1DM", "channel_type": "im", "hidden": True,
         "ts": "1710000100.000002", "event_ts": "1710000100.000002", "deleted_ts": "1710000000.000001"},
        dm_event("joined", subtype="channel_join"),
        dm_event("in a channel without mention", channel="C1CHAN", channel_type="channel"),
    ]
    for event in ignored:
        assert await slack.event(event_envelope(event)) == 200
    assert await slack.event(event_envelope(dm_event("a person", channel="D8"))) == 200
    await slack.adapter.settle()
    assert [m.text for m in slack.fake.replies()] == ["echo: a person"]
    assert responses(fake_openai) == 1


def _long_answer() -> str:
    parts = ["# Report", "Some **bold** text and a [link](https://example.com/a?b=1&c=2)."]
    block = 0
    while sum(len(p) + 1 for p in parts) < 10_000:
        block += 1
        parts.append(f"## Part {block}\n\n- item one\n- item *two*\n\nHere is code:")
        code = "\n".join(f"    value_{block}_{i} = compute({i}) * {i}  # step {i}" for i in range(40))
        parts.append(f"```python\ndef part_{block}():\n{code}\n    return 0\n```")
    return "\n".join(parts)[:10_000].rstrip() + "\n```\n\nThe end."


def _content_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip() and not line.lstrip().startswith("```")]


@pytest.mark.parametrize("where", ["dm", "mention"])
async def test_a_10000_character_answer_with_code_blocks_arrives_complete_and_split(
    slack: Slack, fake_openai: FakeOpenAI, where: str
) -> None:
    long = _long_answer()
    assert len(long) >= 10_000
    fake_openai.reply = lambda _text, _items: long
    if where == "dm":
        event, thread = dm_event("write a report", channel="D6"), None
    else:
        event = mention_event(f"<@{BOT_USER_ID}> write a report", channel="C6")
        thread = event["ts"]
    assert await slack.event(event_envelope(event)) == 200
    await slack.adapter.settle()
    messages = slack.fake.in_thread(event["channel"], thread)
    assert len(messages) >= 3
    texts = [m.text for m in messages]
    for text in texts:
        assert len(text) <= SLACK_TEXT_LIMIT
        fences = [line for line in text.split("\n") if re.fullmatch(r"\s*```\w*\s*", line)]
        assert len(fences) % 2 == 0, "every message closes the code block it opens"
    assert _content_lines("\n".join(texts)) == _content_lines(markdown_to_mrkdwn(long))
    if where == "mention":
        assert messages[0].streamed and slack.fake.count("chat.startStream") == 1
        assert all(len(t) <= SLACK_TEXT_LIMIT for t in messages[0].history), "the stream is capped too"


@pytest.mark.parametrize("error", ["not_allowed", "unknown_method"])
async def test_streaming_falls_back_to_throttled_edits_of_a_placeholder(
    slack: Slack, fake_openai: FakeOpenAI, error: str
) -> None:
    slack.fake.stream_error = error
    markdown = "## Plan\n\n" + " ".join(f"**step{i}**" for i in range(60)) + "\n\n- see [docs](https://x.test)"
    fake_openai.reply = lambda _text, _items: markdown
    fake_openai.stream_delay = 0.005
    first = mention_event(f"<@{BOT_USER_ID}> plan it", channel="C2")
    assert await slack.event(event_envelope(first)) == 200
    [answer] = await slack.answers("C2", first["ts"])
    await slack.adapter.settle()
    assert not answer.streamed
    assert answer.text == markdown_to_mrkdwn(markdown) and "*Plan*" in answer.text
    assert answer.updates >= 1 and len(answer.history[0]) <= len(answer.text), "a placeholder, then edits"
    assert slack.fake.count("chat.startStream") == 1 and slack.fake.count("chat.postMessage") == 1

    second = mention_event(f"<@{BOT_USER_ID}> again", channel="C2")
    assert await slack.event(event_envelope(second)) == 200
    await slack.answers("C2", second["ts"])
    await slack.adapter.settle()
    assert slack.fake.count("chat.startStream") == 1, "a refusing workspace is not asked again"


async def test_a_stream_that_breaks_off_is_finished_by_editing_the_streamed_message(
    slack: Slack, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = lambda _text, _items: "**Done**: see `x`"
    slack.fake.fail_next("chat.stopStream", "streaming_state_conflict")
    first = mention_event(f"<@{BOT_USER_ID}> go", channel="C8")
    assert await slack.event(event_envelope(first)) == 200
    await slack.adapter.settle()
    [message] = slack.fake.in_thread("C8", first["ts"])
    assert message.streamed and message.text == markdown_to_mrkdwn("**Done**: see `x`") == "*Done*: see `x`"

    second = mention_event(f"<@{BOT_USER_ID}> again", channel="C8")
    assert await slack.event(event_envelope(second)) == 200
    [again] = await slack.answers("C8", second["ts"])
    assert again.streamed and slack.fake.count("chat.startStream") == 2, "one broken stream disables nothing"


async def test_an_assistant_error_becomes_one_short_sentence_in_the_thread(
    start_slack: StartSlack, fake_openai: FakeOpenAI
) -> None:
    slack = await start_slack(openai_max_retries=0)
    fake_openai.fail_next(500, message="upstream exploded: secret details", path_prefix="/v1/", times=5)
    event = mention_event(f"<@{BOT_USER_ID}> hello", channel="C3")
    assert await slack.event(event_envelope(event)) == 200
    await slack.adapter.settle()
    [message] = slack.fake.in_thread("C3", event["ts"])
    assert message.text == Unavailable.user_message
    assert "secret" not in message.text and "500" not in message.text


async def test_ai_app_pane_thread_started_gets_suggested_prompts(slack: Slack) -> None:
    started = {"type": "assistant_thread_started", "event_ts": "1710000200.000001",
               "assistant_thread": {"user_id": "U1USER", "channel_id": "D7", "thread_ts": "1710000200.000000",
                                    "context": {"channel_id": "C1CHAN", "team_id": TEAM_ID}}}
    assert await slack.event(event_envelope(started)) == 200
    await slack.fake.wait_for(lambda: slack.fake.count("assistant.threads.setSuggestedPrompts") == 1)
    prompts = slack.fake.payloads("assistant.threads.setSuggestedPrompts")[0]
    assert prompts["channel_id"] == "D7" and prompts["thread_ts"] == "1710000200.000000"
    assert len(json.loads(prompts["prompts"]) if isinstance(prompts["prompts"], str) else prompts["prompts"]) == 3
    [greeting] = await slack.answers("D7", "1710000200.000000")
    assert greeting.text.startswith("Hi!")

    question = dm_event("help me", channel="D7", thread_ts="1710000200.000000")
    assert await slack.event(event_envelope(question)) == 200
    await slack.adapter.settle()
    messages = slack.fake.in_thread("D7", "1710000200.000000")
    assert [m.text for m in messages] == [greeting.text, "echo: help me"] and messages[1].streamed
    assert [s for *_, s in slack.fake.statuses] == ["thinking…", ""]


async def test_url_verification_and_healthz(slack: Slack) -> None:
    body = json.dumps({"token": "legacy", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                       "type": "url_verification"})
    status, text = await slack.post(body, "application/json", sign(body, SECRET))
    assert status == 200 and "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in text
    async with slack.http.get(f"{slack.url}/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json())["mode"] == "http"
