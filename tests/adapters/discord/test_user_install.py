"""Discord: commands installable to users, ``/ask`` answered through the interaction where the bot is not a member.

The real discord.py client against the loopback fake Discord: interactions are dispatched on the gateway
(INTERACTION_CREATE) as Discord sends them for a user install (``authorizing_integration_owners`` naming
the user only, in a server the bot is not in), and assertions read the REST calls the bot made.
"""

from __future__ import annotations

from typing import Any

from adapters.discord.ask import USER_INSTALL
from adapters.discord.setup import invite_urls
from bot.domain import ThreadKey
from tests.fakes import discord_payloads as p
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.support.discord import StartBot

JSON = dict[str, Any]


def user_install_interaction(fake: FakeDiscord, name: str, options: list[JSON] | None = None) -> JSON:
    """A command run in a server the bot is not in, through the app the user installed for themselves."""
    command = next(c for c in fake.commands[None] if c["name"] == name)
    elsewhere = p.snowflake()
    channel = p.text_channel(p.snowflake(), elsewhere, name="their-server")
    payload = p.interaction(fake.application_id, command, fake.alice, channel, guild_id=elsewhere, options=options)
    payload["authorizing_integration_owners"] = {"1": fake.alice["id"]}
    payload["context"] = 0
    return payload


async def test_commands_declare_both_installs_and_every_context(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot()
    commands = {c["name"]: c for c in fake_discord.commands[None]}
    assert {"forget", "ask"} <= set(commands)
    for command in commands.values():
        assert sorted(command["integration_types"]) == [0, 1]
        assert sorted(command["contexts"]) == [0, 1, 2]
    [option] = commands["ask"]["options"]
    assert option["name"] == "prompt" and option["required"]


async def test_ask_from_a_user_install_is_deferred_then_answered_by_editing_the_response_and_forget_works_there(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    adapter = await start_bot()
    ask = user_install_interaction(fake_discord, "ask", [{"name": "prompt", "type": 3, "value": "hello from afar"}])
    await fake_discord.dispatch("INTERACTION_CREATE", ask)
    token = ask["token"]
    edit_path = rf"/webhooks/{fake_discord.application_id}/{token}/messages/@original"

    def answered() -> Any:
        return [c for c in fake_discord.find("PATCH", edit_path)
                if "hello from afar" in (c.json or {}).get("content", "") and c.json.get("components")] or None

    edits = await fake_discord.wait_for(answered)
    [callback] = fake_discord.find("POST", rf"/interactions/{ask['id']}/{token}/callback")
    assert callback.json["type"] == 5, "deferred at once"
    assert callback.at <= edits[0].at
    assert not fake_discord.find("POST", r"/channels/\d+/messages"), "nothing posted in a channel the bot is not in"
    assert edits[-1].json["allowed_mentions"] == {"parse": []}

    me = fake_discord.alice["id"]
    key = ThreadKey("discord", USER_INSTALL, me, me)
    record = await adapter.core.store.get_thread(key)
    assert record is not None, "the user's own conversation"
    assert len(fake_openai.conversations) == 1

    forget = user_install_interaction(fake_discord, "forget")
    await fake_discord.dispatch("INTERACTION_CREATE", forget)
    [followup] = await fake_discord.wait_for(
        lambda: fake_discord.find("POST", rf"/webhooks/\d+/{forget['token']}") or None)
    assert followup.json["flags"] & 64 and "forgotten" in followup.json["content"]
    assert await adapter.core.store.get_thread(key) is None
    assert fake_openai.conversations[next(iter(fake_openai.conversations))].deleted


async def test_a_long_ask_answer_is_split_into_followups(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot()
    fake_openai.reply = lambda _text, _items: "\n".join(f"line {i} " + "x" * 60 for i in range(60))
    ask = user_install_interaction(fake_discord, "ask", [{"name": "prompt", "type": 3, "value": "long please"}])
    await fake_discord.dispatch("INTERACTION_CREATE", ask)
    followups = await fake_discord.wait_for(
        lambda: [c for c in fake_discord.find("POST", rf"/webhooks/\d+/{ask['token']}") if c.json.get("components")]
        or None)
    edits = fake_discord.find("PATCH", rf"/webhooks/\d+/{ask['token']}/messages/@original")
    parts = [edits[-1].json["content"], *(c.json["content"] for c in fake_discord.find(
        "POST", rf"/webhooks/\d+/{ask['token']}"))]
    assert all(len(part) <= 2000 for part in parts) and len(parts) >= 2
    assert "\n".join(parts).endswith("line 59 " + "x" * 60)
    assert followups


def test_invite_urls_cover_a_server_install_and_a_user_install() -> None:
    server, user = invite_urls("1234")
    assert "integration_type=0" in server and "scope=bot+applications.commands" in server
    assert "integration_type=1" in user and "scope=applications.commands" in user and "permissions" not in user
