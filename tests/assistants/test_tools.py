"""Tools from profiles on the Conversations backend: what the user sees while they run, the sources, and
what a failing tool, a tool that needs approval and a server that refuses tools come to.

End to end through the real Bolt app / discord.py client and the real openai SDK against the loopback
fakes; the fake OpenAI holds its stream after a tool's ``in_progress`` event (``tool_gate``) so the
status can be checked while the tool "runs", without guessing at timing.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.progress import Tasks
from bot.assistants.tools import REASONS
from bot.domain import Incoming, ThreadKey
from bot.runtime import Runtime
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.openai_tools import DECLINED_REPLY
from tests.fakes.slack_server import BOT_USER_ID, TEAM_ID, dm_event, event_envelope, mention_event
from tests.support.discord import StartBot, wait_answer
from tests.support.fixtures import MakeRuntime
from tests.support.profiles import write_profiles
from tests.support.slack import Slack, StartSlack

FOUND = "Here is what I found."
SOURCES = "\n\nSources:\n1. [The answer, documented](https://docs.example.test/answer)"
PROFILES = f"""
profiles:
  - match: {{platform: slack, workspace: {TEAM_ID}, channel: C7}}
    tools: [web_search]
  - match: {{platform: slack, channel: D4}}
    tools: [web_search]
  - match: {{platform: slack, channel: C8}}
    tools:
      - {{type: mcp, server_label: docs, server_url: "https://mcp.example.test/sse", allowed_tools: [search_docs],
         headers_from_env: {{Authorization: DOCS_MCP_TOKEN}}}}
  - match: {{platform: discord}}
    tools: [web_search]
"""
SEARCH = ThreadKey("slack", TEAM_ID, "C7", "U1")
DOCS = ThreadKey("slack", TEAM_ID, "C8", "U1")


@pytest.fixture
def profiles_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DOCS_MCP_TOKEN", "Bearer docs-token")
    return write_profiles(tmp_path, PROFILES)


@pytest.fixture(autouse=True)
def found(fake_openai: FakeOpenAI) -> None:
    """One answer whoever asks (the adapters may attribute the words to their speaker)."""
    fake_openai.reply = lambda _text, _items: FOUND


def calls(runtime: Runtime, tool: str, outcome: str) -> float:
    return runtime.metrics.registry.get_sample_value("threadkeeper_tool_calls_total",
                                                     {"tool": tool, "outcome": outcome}) or 0.0


def turns(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r.json or {} for r in fake.requests if r.method == "POST" and r.path == "/v1/responses"]


def task_chunks(slack: Slack) -> list[dict[str, Any]]:
    payloads = [*slack.fake.payloads("chat.startStream"), *slack.fake.payloads("chat.appendStream"),
                *slack.fake.payloads("chat.stopStream")]
    return [c for p in payloads for c in p.get("chunks") or [] if c.get("type") == "task_update"]


# -- what the user sees ------------------------------------------------------------------------------
async def test_slack_stream_shows_the_search_as_a_task_and_the_answer_lists_the_sources(
    start_slack: StartSlack, fake_openai: FakeOpenAI, profiles_file: str
) -> None:
    slack = await start_slack(profiles_file=profiles_file)
    fake_openai.tool_gate = asyncio.Event()
    event = mention_event(f"<@{BOT_USER_ID}> look it up", channel="C7")
    assert await slack.event(event_envelope(event)) == 200
    await slack.fake.wait_for(lambda: any(c.get("title") == "searching the web…" for c in task_chunks(slack)))
    assert slack.fake.in_thread("C7", event["ts"])[0].text == "", "the task shows before any text"
    fake_openai.tool_gate.set()
    [answer] = await slack.answers("C7", event["ts"])
    assert answer.streamed and answer.text == FOUND + SOURCES
    opened, done = task_chunks(slack)
    assert (opened["id"], opened["status"]) == (done["id"], "in_progress") and done["status"] == "complete"
    assert turns(fake_openai)[0]["tools"] == [{"type": "web_search"}]
    assert calls(slack.runtime, "web_search", "completed") == 1


def test_each_tool_status_is_a_task_of_its_own_completed_when_the_answer_goes_on() -> None:
    tasks = Tasks()
    assert tasks.text("hi") == {"markdown_text": "hi"} and tasks.text("") == {}
    assert tasks.begin("connecting to docs…") == [
        {"type": "task_update", "id": "tk-tool-1", "status": "in_progress", "title": "connecting to docs…"}]
    assert tasks.begin("using docs (search_docs)…") == [
        {"type": "task_update", "id": "tk-tool-1", "status": "complete"},
        {"type": "task_update", "id": "tk-tool-2", "status": "in_progress", "title": "using docs (search_docs)…"}]
    assert tasks.text("found") == {"chunks": [{"type": "task_update", "id": "tk-tool-2", "status": "complete"},
                                              {"type": "markdown_text", "text": "found"}]}
    tasks.done()
    assert tasks.text("more") == {"markdown_text": "more"}
    assert tasks.begin("searching the web…")[0]["id"] == "tk-tool-3"


async def test_slack_assistant_thread_shows_the_search_as_its_status(
    start_slack: StartSlack, fake_openai: FakeOpenAI, profiles_file: str
) -> None:
    slack = await start_slack(profiles_file=profiles_file)
    fake_openai.tool_gate = asyncio.Event()
    thread = "1700000001.000001"
    assert await slack.event(event_envelope(dm_event("news?", channel="D4", thread_ts=thread))) == 200
    await slack.fake.wait_for(lambda: ("D4", thread, "searching the web…") in slack.fake.statuses)
    fake_openai.tool_gate.set()
    [answer] = await slack.answers("D4", thread)
    assert answer.text == FOUND + SOURCES
    await slack.adapter.settle()
    assert [s for _, _, s in slack.fake.statuses] == ["thinking…", "searching the web…", ""]


async def test_slack_without_streaming_shows_a_status_line_then_the_answer_with_links(
    start_slack: StartSlack, fake_openai: FakeOpenAI, profiles_file: str
) -> None:
    slack = await start_slack(profiles_file=profiles_file)
    slack.fake.stream_error = "not_allowed"
    fake_openai.tool_gate = asyncio.Event()
    event = mention_event(f"<@{BOT_USER_ID}> look it up", channel="C7")
    assert await slack.event(event_envelope(event)) == 200
    await slack.fake.wait_for(lambda: [m.text for m in slack.fake.in_thread("C7", event["ts"])] == [
        "_searching the web…_"])
    fake_openai.tool_gate.set()
    await slack.fake.wait_for(lambda: "Sources" in slack.fake.in_thread("C7", event["ts"])[0].text)
    await slack.adapter.settle()
    [answer] = slack.fake.in_thread("C7", event["ts"])
    assert answer.text == f"{FOUND}\n\nSources:\n1. <https://docs.example.test/answer|The answer, documented>"
    assert answer.history[0] == "_searching the web…_", "the status line is edited into the answer"


async def test_discord_shows_a_status_line_edited_in_place(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI, profiles_file: str
) -> None:
    await start_bot(edit_interval=0.05, profiles_file=profiles_file)
    fake_openai.tool_gate = asyncio.Event()
    await fake_discord.send_guild("look it up", mention_bot=True)
    channel = fake_discord.channel_id
    await wait_answer(fake_discord, channel, text="*searching the web…*")
    fake_openai.tool_gate.set()
    [answer] = await wait_answer(fake_discord, channel, text=FOUND + SOURCES)
    assert len(fake_discord.find("POST", rf"/channels/{channel}/messages")) == 1, "one message, edited in place"
    assert answer["content"].endswith("(https://docs.example.test/answer)")


# -- MCP servers -----------------------------------------------------------------------------------------
async def ask(runtime: Runtime, key: ThreadKey, text: str, message_id: str,
              statuses: list[str] | None = None) -> str:
    async def on_delta(_delta: str) -> None:
        return None

    async def on_status(status: str) -> None:
        if statuses is not None:
            statuses.append(status)

    answer = await runtime.core.handle(Incoming(key, text, message_id), on_delta, on_status)
    assert answer is not None
    return answer.text


async def test_an_mcp_tool_runs_with_its_headers_and_the_user_sees_it(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, profiles_file: str
) -> None:
    runtime = await make_runtime(profiles_file=profiles_file)
    statuses: list[str] = []
    assert await ask(runtime, DOCS, "find the docs", "m1", statuses) == FOUND
    assert statuses == ["connecting to docs…", "using docs (search_docs)…"]
    [tool] = turns(fake_openai)[0]["tools"]
    assert tool == {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.test/sse",
                    "require_approval": {"never": {"tool_names": ["search_docs"]}},
                    "headers": {"Authorization": "Bearer docs-token"}}
    assert calls(runtime, "mcp:docs", "completed") == 1


async def test_a_failing_mcp_server_still_yields_an_answer(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, profiles_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = await make_runtime(profiles_file=profiles_file, openai_max_retries=0)
    fake_openai.mcp_failure = "list"  # the provider cannot reach the server: HTTP 424 before anything
    with caplog.at_level(logging.WARNING, logger="threadkeeper.assistant"):
        assert await ask(runtime, DOCS, "find the docs", "m1") == FOUND
    refused, answered = turns(fake_openai)
    assert "tools" in refused and "tools" not in answered
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("tool mcp:docs failed before the answer (HTTP 424: ")
    assert calls(runtime, "mcp:docs", "failed") == 1
    assert await runtime.assistant.refused_params() == [], "a failing tool is no refusal of tools"

    fake_openai.mcp_failure = "call"  # the server fails during the answer: the model goes on without it
    with caplog.at_level(logging.WARNING, logger="threadkeeper.assistant"):
        assert await ask(runtime, DOCS, "again", "m2") == FOUND
    assert "tools" in turns(fake_openai)[-1], "the next message tries the tool again"
    assert calls(runtime, "mcp:docs", "failed") == 2
    assert len({t["conversation"] for t in turns(fake_openai)}) == 1, "the conversation goes on"


async def test_a_tool_that_needs_approval_is_declined_where_nobody_can_be_asked(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, profiles_file: str
) -> None:
    runtime = await make_runtime(profiles_file=profiles_file)
    fake_openai.mcp_tool = "create_ticket"  # not in allowed_tools: the server asks for approval
    assert await ask(runtime, DOCS, "open a ticket", "m1") == DECLINED_REPLY
    first, follow_up = turns(fake_openai)
    request = fake_openai.conversations[first["conversation"]].items[2]
    assert request["type"] == "mcp_approval_request" and request["name"] == "create_ticket"
    assert follow_up["conversation"] == first["conversation"]
    assert follow_up["input"] == [{"type": "mcp_approval_response", "approval_request_id": request["id"],
                                   "approve": False, "reason": REASONS["unasked"]}]
    assert calls(runtime, "mcp:docs", "declined") == 1 and calls(runtime, "mcp:docs", "completed") == 0


async def test_a_server_that_refuses_tools_answers_without_them_from_then_on(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, profiles_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake_openai.refuse_param("tools")
    runtime = await make_runtime(profiles_file=profiles_file, openai_max_retries=0)
    with caplog.at_level(logging.WARNING, logger="threadkeeper.assistant"):
        assert await ask(runtime, SEARCH, "look it up", "m1") == FOUND
        assert await ask(runtime, SEARCH, "again", "m2") == FOUND
    assert ["tools" in t for t in turns(fake_openai)] == [True, False, False]
    assert len([r for r in caplog.records if "'tools'" in r.getMessage()]) == 1


async def test_an_answer_that_is_not_streamed_lists_its_sources_too(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, profiles_file: str
) -> None:
    runtime = await make_runtime(profiles_file=profiles_file)
    answer = await runtime.core.handle(Incoming(SEARCH, "look it up", "m1"))
    assert answer is not None and answer.text == FOUND + SOURCES
    assert [t["text"] for t in await runtime.store.turns(SEARCH)][-1] == FOUND + SOURCES
