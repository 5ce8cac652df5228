"""Approving a tool call in Discord: the prompt with buttons, clicks by the asker and by someone else.

The real discord.py client against the loopback fake Discord, the real openai SDK against the fake OpenAI
(its MCP tool ``create_ticket`` is not in ``allowed_tools``, so it asks for approval), real Redis. Clicks are
INTERACTION_CREATE payloads (type 3) dispatched on the gateway as Discord sends them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from adapters.discord.approvals import PREFIX
from adapters.kit.approvals import EXPIRED, GONE, NOT_YOURS, WITHDRAWN
from tests.fakes import discord_payloads as dp
from tests.fakes.discord_server import Call, FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.openai_tools import DECLINED_REPLY
from tests.support.discord import StartBot
from tests.support.profiles import write_profiles
from tests.support.redis_proxy import FreezingRedisProxy

JSON = dict[str, Any]
FOUND = "Your ticket is open."
PROFILES = """
profiles:
  - match: {platform: discord}
    tools:
      - {type: mcp, server_label: docs, server_url: "https://mcp.example.test/sse", allowed_tools: [search_docs]}
"""


@pytest.fixture
def profiles_file(tmp_path: Path) -> str:
    return write_profiles(tmp_path, PROFILES)


@pytest.fixture(autouse=True)
def needs_approval(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply = lambda _text, _items: FOUND
    fake_openai.mcp_tool = "create_ticket"
    fake_openai.mcp_arguments = json.dumps({"title": "@everyone `boom` <@&123>"})


def turns(fake: FakeOpenAI) -> list[JSON]:
    return [r.json or {} for r in fake.requests if r.method == "POST" and r.path == "/v1/responses"]


def prompt_ids(call: Call) -> list[str]:
    [row] = (call.json or {})["components"]
    return [button["custom_id"] for button in row["components"]]


def click(fake: FakeDiscord, custom_id: str, message: JSON, clicker: JSON) -> JSON:
    """A button click (INTERACTION_CREATE type 3) by ``clicker`` on ``message`` in the guild."""
    channel = fake.channels.get(message["channel_id"]) or dp.text_channel(message["channel_id"], fake.guild_id)
    return {
        "id": dp.snowflake(), "application_id": fake.application_id, "type": 3,
        "data": {"custom_id": custom_id, "component_type": 2}, "channel_id": message["channel_id"],
        "channel": channel, "guild_id": fake.guild_id, "guild_locale": "en-US",
        "member": {**dp.member(clicker), "permissions": "0"}, "message": message,
        "token": f"itok-{dp.snowflake()}", "version": 1, "app_permissions": "0", "locale": "en-US",
        "entitlements": [], "attachment_size_limit": 8388608,
        "authorizing_integration_owners": {"0": fake.guild_id}, "context": 0,
    }


async def callback_of(fake: FakeDiscord, interaction: JSON) -> JSON:
    path = rf"/interactions/{interaction['id']}/{interaction['token']}/callback"
    [callback] = await fake.wait_for(lambda: fake.find("POST", path) or None)
    return dict(callback.json or {})


async def answer_to(fake: FakeDiscord, interaction: JSON) -> tuple[str, JSON]:
    """What a deferred click said after its callback (type 6): the prompt edited (``PATCH`` of ``@original``)
    or a follow-up (``POST``), and its body."""
    assert (await callback_of(fake, interaction))["type"] == 6, "deferred at once, before any Redis call"
    webhook = rf"/webhooks/\d+/{interaction['token']}"
    [call] = await fake.wait_for(lambda: [*fake.find("PATCH", webhook + "/messages/@original"),
                                          *fake.find("POST", webhook)] or None)
    return call.method, dict(call.json or {})


async def test_in_a_channel_only_the_asker_can_approve_and_the_answer_completes(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI, profiles_file: str
) -> None:
    await start_bot(edit_interval=0.05, profiles_file=profiles_file)
    channel = fake_discord.channel_id
    await fake_discord.send_guild("open a ticket", mention_bot=True)
    posts = rf"/channels/{channel}/messages"
    [post] = await fake_discord.wait_for(
        lambda: [c for c in fake_discord.find("POST", posts) if (c.json or {}).get("components")] or None)
    assert post.json is not None and post.json["allowed_mentions"] == {"parse": []}, "pings nobody"
    content = post.json["content"]
    assert content.startswith("**Approve a tool call?** `docs` wants to run `create_ticket` with `{")
    assert content.count("`") == 6 and "@everyone  boom  <@&123>" in content
    yes, no = prompt_ids(post)
    assert yes.startswith(f"{PREFIX}yes:") and no == yes.replace(":yes:", ":no:", 1)
    assert fake_discord.alice["id"] not in yes
    await fake_discord.wait_for(lambda: any(m["content"] == "*waiting for your approval…*"
                                            for m in fake_discord.bot_messages(channel)) or None)
    prompt = next(m for m in fake_discord.bot_messages(channel) if m["content"] == content)

    someone_else = click(fake_discord, yes, prompt, fake_discord.bob)
    await fake_discord.dispatch("INTERACTION_CREATE", someone_else)
    method, refused = await answer_to(fake_discord, someone_else)
    assert method == "POST" and refused["flags"] & 64 and refused["content"] == NOT_YOURS, "told privately"
    assert len(turns(fake_openai)) == 1, "someone else's click changes nothing"

    asker = click(fake_discord, yes, prompt, fake_discord.alice)
    await fake_discord.dispatch("INTERACTION_CREATE", asker)
    method, decided = await answer_to(fake_discord, asker)
    assert method == "PATCH", "the prompt itself is updated"
    assert decided["content"] == "Approved: `docs: create_ticket`" and decided["components"] == []
    [answer] = [m for m in fake_discord.bot_messages(channel) if m["id"] != prompt["id"]]
    await fake_discord.wait_for(lambda: answer["content"] == FOUND or None)  # the status line, edited in place
    [request] = fake_openai.approval_requests.values()
    assert turns(fake_openai)[-1]["input"] == [{"type": "mcp_approval_response", "approval_request_id": request["id"],
                                                "approve": True}]


async def test_ask_prompts_ephemerally_and_a_decline_tells_the_model(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI, profiles_file: str
) -> None:
    adapter = await start_bot(edit_interval=0.05, profiles_file=profiles_file)
    ask = await fake_discord.invoke("ask", options=[{"name": "prompt", "type": 3, "value": "open a ticket"}])
    followups = rf"/webhooks/\d+/{ask['token']}$"
    [post] = await fake_discord.wait_for(
        lambda: [c for c in fake_discord.find("POST", followups) if (c.json or {}).get("components")] or None)
    assert post.json is not None and post.json["flags"] & 64, "only the asker sees it"
    _, no = prompt_ids(post)
    prompt = next(m for m in fake_discord.messages.values() if m["content"] == post.json["content"])

    asker = click(fake_discord, no, prompt, fake_discord.alice)
    await fake_discord.dispatch("INTERACTION_CREATE", asker)
    method, decided = await answer_to(fake_discord, asker)
    assert method == "PATCH" and decided["content"] == "Declined: `docs: create_ticket`"
    original = rf"/webhooks/\d+/{ask['token']}/messages/@original"
    await fake_discord.wait_for(lambda: any((c.json or {}).get("components")
                                            for c in fake_discord.find("PATCH", original)) or None)
    assert turns(fake_openai)[-1]["input"][0]["approve"] is False
    labels = {"tool": "mcp:docs", "outcome": "declined"}
    assert adapter.core.metrics.registry.get_sample_value("threadkeeper_tool_calls_total", labels) == 1


async def test_a_prompt_nobody_answers_says_so_and_the_answer_goes_on(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI, profiles_file: str
) -> None:
    adapter = await start_bot(edit_interval=0.05, profiles_file=profiles_file, tool_approval_timeout=0.3)
    channel = fake_discord.channel_id
    await fake_discord.send_guild("open a ticket", mention_bot=True)
    [post] = await fake_discord.wait_for(lambda: [c for c in fake_discord.find("POST", rf"/channels/{channel}/messages")
                                                  if (c.json or {}).get("components")] or None)
    prompt = next(m for m in fake_discord.bot_messages(channel) if m["content"] == (post.json or {})["content"])
    [edit] = await fake_discord.wait_for(
        lambda: fake_discord.find("PATCH", rf"/channels/{channel}/messages/{prompt['id']}") or None)
    assert edit.json is not None
    shown = (edit.json["content"], edit.json["components"], edit.json["allowed_mentions"])
    assert shown == (EXPIRED, [], {"parse": []}), "said so, without the buttons, pinging nobody"
    [answer] = [m for m in fake_discord.bot_messages(channel) if m["id"] != prompt["id"]]
    await fake_discord.wait_for(lambda: answer["content"] == DECLINED_REPLY or None)
    labels = {"tool": "mcp:docs", "outcome": "expired"}
    assert adapter.core.metrics.registry.get_sample_value("threadkeeper_tool_calls_total", labels) == 1



async def channel_prompt(fake: FakeDiscord) -> tuple[JSON, list[str]]:
    """Mention the bot in the channel; the approval prompt it posts, and its buttons' ids."""
    channel = fake.channel_id
    await fake.send_guild("open a ticket", mention_bot=True)
    [post] = await fake.wait_for(lambda: [c for c in fake.find("POST", rf"/channels/{channel}/messages")
                                          if (c.json or {}).get("components")] or None)
    prompt = next(m for m in fake.bot_messages(channel) if m["content"] == (post.json or {})["content"])
    return prompt, prompt_ids(post)


async def test_a_shutdown_while_waiting_withdraws_the_prompt_and_a_later_click_runs_nothing(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI, profiles_file: str,
    caplog: pytest.LogCaptureFixture
) -> None:
    adapter = await start_bot(edit_interval=0.05, profiles_file=profiles_file)
    prompt, (yes, _) = await channel_prompt(fake_discord)
    with caplog.at_level(logging.INFO):
        await adapter.drain(0.05)  # the answer, still waiting for the asker, is cancelled
    edit = rf"/channels/{fake_discord.channel_id}/messages/{prompt['id']}"
    [withdrawn] = await fake_discord.wait_for(lambda: fake_discord.find("PATCH", edit) or None)
    assert withdrawn.json is not None and (withdrawn.json["content"], withdrawn.json["components"]) == (WITHDRAWN, [])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], "no traceback"

    late = click(fake_discord, yes, prompt, fake_discord.alice)
    await fake_discord.dispatch("INTERACTION_CREATE", late)
    method, answered = await answer_to(fake_discord, late)
    assert (method, answered["content"]) == ("PATCH", GONE), "closed: a click after the wait reads no approval"
    assert len(turns(fake_openai)) == 1, "nothing ran"


async def test_a_click_is_acknowledged_in_time_while_redis_does_not_answer(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI, profiles_file: str, redis_url: str
) -> None:
    async with FreezingRedisProxy(redis_url, limit=10**9) as proxy:
        await start_bot(edit_interval=0.05, profiles_file=profiles_file, redis_url=proxy.url)
        prompt, (yes, _) = await channel_prompt(fake_discord)
        proxy.limit = proxy.forwarded  # Redis stops answering
        asker = click(fake_discord, yes, prompt, fake_discord.alice)
        await fake_discord.dispatch("INTERACTION_CREATE", asker)
        assert (await callback_of(fake_discord, asker))["type"] == 6, "deferred within Discord's 3 s"
        await proxy.frozen.wait()
        proxy.frozen.clear()
        proxy.limit = 10**9  # Redis is back: the click is decided, the answer goes on
        method, decided = await answer_to(fake_discord, asker)
        assert (method, decided["content"]) == ("PATCH", "Approved: `docs: create_ticket`")
        [answer] = [m for m in fake_discord.bot_messages(fake_discord.channel_id) if m["id"] != prompt["id"]]
        await fake_discord.wait_for(lambda: answer["content"] == FOUND or None, within=30)


async def test_with_open_threads_the_prompt_and_the_answer_share_the_one_thread(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI, profiles_file: str
) -> None:
    """The status line and the prompt both ask where the answer goes, at once: one thread is opened, not two."""
    await start_bot(edit_interval=0.05, profiles_file=profiles_file, discord_open_threads=True)
    sent = await fake_discord.send_guild("open a ticket", mention_bot=True)
    threads = rf"/channels/{fake_discord.channel_id}/messages/{sent['id']}/threads"
    [post] = await fake_discord.wait_for(lambda: [c for c in fake_discord.find("POST", r"/channels/\d+/messages")
                                                  if (c.json or {}).get("components")] or None)
    prompt = next(m for m in fake_discord.messages.values() if m["content"] == (post.json or {})["content"])
    yes, _ = prompt_ids(post)
    asker = click(fake_discord, yes, prompt, fake_discord.alice)
    await fake_discord.dispatch("INTERACTION_CREATE", asker)
    await answer_to(fake_discord, asker)
    thread = prompt["channel_id"]
    await fake_discord.wait_for(lambda: any(m["content"] == FOUND for m in fake_discord.bot_messages(thread)) or None)
    assert len(fake_discord.find("POST", threads)) == 1, "one thread for the answer and its prompt"
