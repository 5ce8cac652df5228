"""The Discord adapter end to end: the real discord.py client against the loopback fake Discord.

The bot logs in over REST, syncs ``/forget``, connects the gateway websocket, and answers events the
tests push; assertions read the REST calls it made (what went out on the wire).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import discord
import discord.http
import pytest
from discord.gateway import DiscordWebSocket

from adapters.discord import DiscordAdapter, invite_url, print_invite_url, rest_base, run
from adapters.discord_commands import flag_name
from bot.config import ConfigError, load_settings
from bot.runtime import Runtime
from bot.types import Unavailable
from tests.conftest import MakeRuntime
from tests.fakes.discord_server import Call, FakeDiscord
from tests.fakes.openai_server import FakeOpenAI

StartBot = Callable[..., Awaitable[DiscordAdapter]]


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    saved = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as fake:
        yield fake
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest.fixture
async def start_bot(fake_discord: FakeDiscord, make_runtime: MakeRuntime) -> AsyncIterator[StartBot]:
    """``await start_bot(**settings)``: a connected adapter on the fake Discord (closed afterwards)."""
    adapters: list[DiscordAdapter] = []

    async def start(edit_interval: float = 0.3, runtime: Runtime | None = None, **overrides: Any) -> DiscordAdapter:
        settings = {"discord_token": fake_discord.token, "discord_api_base": fake_discord.api_base, **overrides}
        runtime = runtime or await make_runtime(**settings)
        adapter = DiscordAdapter(runtime.core, runtime.settings, edit_interval=edit_interval)
        adapters.append(adapter)
        await adapter.start()
        await fake_discord.wait_connected(fake_discord.connected + 1)
        return adapter

    yield start
    for adapter in adapters:
        await adapter.close()


def message_posts(fake: FakeDiscord, channel_id: str) -> list[Call]:
    return fake.find("POST", rf"/channels/{channel_id}/messages")


async def wait_answer(fake: FakeDiscord, channel_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The bot's messages in a channel once there are ``count`` of them and the last one has content."""
    def check() -> list[dict[str, Any]] | None:
        msgs = fake.bot_messages(channel_id)
        return msgs if len(msgs) >= count and msgs[-1]["content"] else None
    return await fake.wait_for(check)


async def test_dm_is_answered(fake_discord: FakeDiscord, start_bot: StartBot) -> None:
    await start_bot()
    sent = await fake_discord.send_dm("hello there")
    [answer] = await wait_answer(fake_discord, sent["channel_id"])
    assert answer["content"] == "echo: hello there"
    [post] = message_posts(fake_discord, sent["channel_id"])
    assert "message_reference" not in post.json  # DMs: a plain message, no reply quote


async def test_mention_is_answered_as_a_reply_without_the_mention(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot()
    sent = await fake_discord.send_guild("what's up?", mention_bot=True)
    [answer] = await wait_answer(fake_discord, fake_discord.channel_id)
    assert answer["content"] == "echo: what's up?"
    [post] = message_posts(fake_discord, fake_discord.channel_id)
    assert str(post.json["message_reference"]["message_id"]) == sent["id"]
    assert post.json["allowed_mentions"] == {"parse": [], "replied_user": True}


async def test_role_mention_is_answered(fake_discord: FakeDiscord, start_bot: StartBot) -> None:
    """Discord's autocomplete often picks the bot's managed role instead of the user."""
    await start_bot()
    await fake_discord.send_guild("ping by role", mention_role=True)
    [answer] = await wait_answer(fake_discord, fake_discord.channel_id)
    assert answer["content"] == "echo: ping by role"


async def test_bots_own_messages_and_unmentioned_chatter_are_ignored(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot()
    await fake_discord.send_dm("from a bot", author=fake_discord.other_bot)
    await fake_discord.send_guild("bot mention", author=fake_discord.other_bot, mention_bot=True)
    await fake_discord.send_guild("myself", author=fake_discord.bot, mention_bot=True)
    await fake_discord.send_guild("chatter without a mention")
    await fake_discord.send_guild("@everyone is not a mention of me", mention_everyone=True)
    # Events are handled in order: once this one is answered, the ones above have been decided on.
    sentinel = await fake_discord.send_dm("sentinel")
    await wait_answer(fake_discord, sentinel["channel_id"])
    assert fake_discord.find("POST", r"/channels/\d+/messages") == message_posts(fake_discord, sentinel["channel_id"])
    assert fake_openai.count("POST", "/v1/responses") == 1


async def test_typing_is_sent_before_the_answer(fake_discord: FakeDiscord, start_bot: StartBot) -> None:
    await start_bot()
    sent = await fake_discord.send_dm("type first")
    await wait_answer(fake_discord, sent["channel_id"])
    channel = sent["channel_id"]
    order = [c.path for c in fake_discord.calls if c.path.startswith(f"/channels/{channel}/")]
    assert order[0] == f"/channels/{channel}/typing"
    assert order.index(f"/channels/{channel}/typing") < order.index(f"/channels/{channel}/messages")


async def test_forget_is_ephemeral_and_the_next_message_starts_a_new_thread(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot()
    await fake_discord.send_guild("remember me", mention_bot=True)
    await wait_answer(fake_discord, fake_discord.channel_id)
    assert len(fake_openai.conversations) == 1

    interaction = await fake_discord.invoke("forget")
    token = interaction["token"]
    [followup] = await fake_discord.wait_for(lambda: fake_discord.find("POST", rf"/webhooks/\d+/{token}"))
    [callback] = fake_discord.find("POST", rf"/interactions/{interaction['id']}/{token}/callback")
    assert callback.json == {"type": 5, "data": {"flags": 64}}  # deferred, ephemeral
    assert callback.at <= followup.at
    assert followup.json["flags"] & 64
    assert "forgotten" in followup.json["content"]
    assert fake_openai.conversations[next(iter(fake_openai.conversations))].deleted

    await fake_discord.send_guild("who am I?", mention_bot=True)
    await wait_answer(fake_discord, fake_discord.channel_id, count=2)
    assert len(fake_openai.conversations) == 2


async def test_forget_all_covers_every_channel_of_the_user(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot()
    await fake_discord.send_guild("one", mention_bot=True)
    await wait_answer(fake_discord, fake_discord.channel_id)
    sent = await fake_discord.send_dm("two")
    await wait_answer(fake_discord, sent["channel_id"])
    interaction = await fake_discord.invoke("forget", options=[{"name": "all", "type": 5, "value": True}])
    token = interaction["token"]
    [followup] = await fake_discord.wait_for(lambda: fake_discord.find("POST", rf"/webhooks/\d+/{token}"))
    assert followup.json["content"].startswith("Done: I've forgotten 1 conversation")  # the guild one
    assert sum(c.deleted for c in fake_openai.conversations.values()) == 1


def fenced_reply(text: str, _items: list[Any]) -> str:
    code = "\n".join(f"    print('line {i:03d} of a long code block')" for i in range(90))
    prose = "\n".join(f"Paragraph {i}: " + "words " * 30 for i in range(10))
    return f"{prose}\n\n```python\ndef main():\n{code}\n```\n\n{prose}"


async def test_long_answer_is_split_with_balanced_fences(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = fenced_reply
    full = fenced_reply("", [])
    assert len(full) > 5000
    await start_bot()
    await fake_discord.send_guild("long please", mention_bot=True)

    def complete() -> list[dict[str, Any]] | None:
        msgs = fake_discord.bot_messages(fake_discord.channel_id)
        return msgs if "\n".join(m["content"] for m in msgs).count("Paragraph 9") == 2 else None

    messages = await fake_discord.wait_for(complete)
    assert len(messages) >= 3
    assert all(len(m["content"]) <= 2000 for m in messages)
    assert all(m["content"].count("```") % 2 == 0 for m in messages)
    joined = "\n".join(m["content"] for m in messages)
    assert all(f"line {i:03d} of" in joined for i in range(90))
    assert sum("```python" in m["content"] for m in messages) >= 2  # the cut fence was reopened
    posts = message_posts(fake_discord, fake_discord.channel_id)
    assert "message_reference" in posts[0].json
    assert all("message_reference" not in p.json for p in posts[1:])


async def test_an_answer_with_everyone_pings_nobody(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = lambda _t, _i: (
        f"@everyone @here <@&{fake_discord.bot_role_id}> <@{fake_discord.bob['id']}> look at this"
    )
    fake_openai.stream_delay = 0.05
    await start_bot(edit_interval=0.01)
    await fake_discord.send_guild("ping them", mention_bot=True)
    await fake_discord.wait_for(
        lambda: [m for m in fake_discord.bot_messages(fake_discord.channel_id) if "look at this" in m["content"]])
    writes = [c for c in fake_discord.calls if c.method in ("POST", "PATCH") and "/messages" in c.path]
    assert writes
    for call in writes:
        mentions = call.json["allowed_mentions"]
        assert mentions["parse"] == []
        assert "users" not in mentions and "roles" not in mentions
    assert all(not c.json["allowed_mentions"].get("replied_user") for c in writes[1:])


async def test_answer_streams_by_throttled_edits(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    final = ("streaming " * 30).strip()
    fake_openai.reply = lambda _t, _i: "streaming " * 30
    fake_openai.stream_delay = 0.25
    await start_bot(edit_interval=0.3)
    sent = await fake_discord.send_dm("stream it")
    await fake_discord.wait_for(
        lambda: [m for m in fake_discord.bot_messages(sent["channel_id"]) if m["content"] == final])
    [post] = message_posts(fake_discord, sent["channel_id"])
    edits = fake_discord.find("PATCH", rf"/channels/{sent['channel_id']}/messages/\d+")
    assert len(post.json["content"]) < len(final)  # the first send came at the first delta
    assert len(edits) >= 2
    times = [post.at] + [e.at for e in edits[:-1]]
    # The last edit is the final render; every streamed one before it respects the interval.
    assert all(b - a >= 0.29 for a, b in itertools.pairwise(times))


async def test_errors_reach_the_user_as_one_sentence(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail_next(500, path_prefix="/v1/responses", times=10)
    await start_bot()
    sent = await fake_discord.send_dm("will fail")
    [answer] = await wait_answer(fake_discord, sent["channel_id"])
    assert answer["content"] == Unavailable.user_message


async def test_open_threads_answers_in_a_thread_and_continues_there(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot(discord_open_threads=True)
    sent = await fake_discord.send_guild("start a thread", mention_bot=True)
    [opened] = await fake_discord.wait_for(
        lambda: fake_discord.find("POST", rf"/channels/{fake_discord.channel_id}/messages/{sent['id']}/threads"))
    thread_id = next(c for c in fake_discord.channels.values() if c.get("parent_id") == fake_discord.channel_id)["id"]
    assert opened.json["name"] == "start a thread"
    await wait_answer(fake_discord, thread_id)
    await fake_discord.send_guild("and continue", mention_bot=True, channel_id=thread_id)
    [_, second] = await wait_answer(fake_discord, thread_id, count=2)
    assert second["content"] == "echo: and continue"
    assert len(fake_openai.conversations) == 1
    assert not fake_discord.bot_messages(fake_discord.channel_id)


async def test_listed_channel_answers_every_message(fake_discord: FakeDiscord, start_bot: StartBot) -> None:
    await start_bot(discord_channels=fake_discord.channel_id)
    await fake_discord.send_guild("no mention needed here")
    [answer] = await wait_answer(fake_discord, fake_discord.channel_id)
    assert answer["content"] == "echo: no mention needed here"


async def test_intents_are_minimal_unless_channels_are_listed(fake_discord: FakeDiscord, start_bot: StartBot) -> None:
    minimal = discord.Intents(guilds=True, guild_messages=True, dm_messages=True)
    await start_bot()
    assert fake_discord.identifies[-1]["intents"] == minimal.value
    await start_bot(discord_channels=fake_discord.channel_id)
    assert fake_discord.identifies[-1]["intents"] == minimal.value | discord.Intents(message_content=True).value


async def test_sharding_identifies_only_the_assigned_shards(fake_discord: FakeDiscord, start_bot: StartBot) -> None:
    await start_bot(discord_shard_count=2, discord_shard_ids="1")
    assert [i["shard"] for i in fake_discord.identifies] == [[1, 2]]
    assert await fake_discord.dispatch("MESSAGE_CREATE", {"channel_id": "1"}) == 0  # DMs belong to shard 0


async def test_global_commands_sync_only_when_the_set_changes(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    global_path = f"/applications/{fake_discord.application_id}/commands"
    first = await start_bot()
    await first.close()
    second = await start_bot()
    assert fake_discord.count("PUT", global_path) == 1  # the second start found the same hash
    assert [c["name"] for c in fake_discord.commands[None]] == ["forget"]
    assert fake_discord.commands[None][0]["options"][0]["name"] == "all"
    await second.core.store.set_flag(flag_name(fake_discord.application_id), "an older command set")
    await second.close()
    await start_bot()
    assert fake_discord.count("PUT", global_path) == 2


async def test_dev_guild_syncs_instantly_and_never_globally(fake_discord: FakeDiscord, start_bot: StartBot) -> None:
    first = await start_bot(discord_dev_guild=fake_discord.guild_id)
    await first.close()
    await start_bot(discord_dev_guild=fake_discord.guild_id)
    app = fake_discord.application_id
    assert fake_discord.count("PUT", f"/applications/{app}/guilds/{fake_discord.guild_id}/commands") == 2
    assert fake_discord.count("PUT", f"/applications/{app}/commands") == 0
    interaction = await fake_discord.invoke("forget")
    await fake_discord.wait_for(lambda: fake_discord.find("POST", rf"/webhooks/\d+/{interaction['token']}"))


async def test_run_disconnects_cleanly_when_stopped(fake_discord: FakeDiscord, make_runtime: MakeRuntime) -> None:
    runtime = await make_runtime(discord_token=fake_discord.token, discord_api_base=fake_discord.url)
    stop = asyncio.Event()
    task = asyncio.create_task(run(runtime, stop=stop))
    await fake_discord.wait_connected()
    sent = await fake_discord.send_dm("before shutdown")
    await wait_answer(fake_discord, sent["channel_id"])
    stop.set()
    await asyncio.wait_for(task, 10)
    await fake_discord.wait_for(lambda: fake_discord.connected == 0)
    assert runtime.core.closing
    assert discord.http.Route.BASE == "https://discord.com/api/v10"


async def test_run_reports_a_rejected_token_in_one_line(fake_discord: FakeDiscord, make_runtime: MakeRuntime) -> None:
    runtime = await make_runtime(discord_token="not-the-token", discord_api_base=fake_discord.api_base)
    with pytest.raises(ConfigError, match="DISCORD_TOKEN"):
        await asyncio.wait_for(run(runtime, stop=asyncio.Event()), 10)


def test_invite_url_asks_exactly_for_what_the_bot_uses() -> None:
    # Bits from Discord's permission table: VIEW_CHANNEL, SEND_MESSAGES, READ_MESSAGE_HISTORY,
    # SEND_MESSAGES_IN_THREADS; CREATE_PUBLIC_THREADS only when the bot opens threads.
    needed = (1 << 10) | (1 << 11) | (1 << 16) | (1 << 38)
    query = parse_qs(urlparse(invite_url("1234")).query)
    assert query["client_id"] == ["1234"]
    assert query["scope"] == ["bot applications.commands"]
    assert int(query["permissions"][0]) == needed
    threaded = parse_qs(urlparse(invite_url("1234", open_threads=True)).query)
    assert int(threaded["permissions"][0]) == needed | (1 << 35)


def test_print_invite_url_reads_the_application_id_from_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    token = base64.urlsafe_b64encode(b"987654321").decode().rstrip("=") + ".Gabcde.signature"
    assert print_invite_url(load_settings(_env_file=None, discord_token=token)) == 0
    assert "client_id=987654321" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="DISCORD_TOKEN"):
        print_invite_url(load_settings(_env_file=None, discord_token="garbage"))


@pytest.mark.parametrize(("value", "expected"), [
    ("http://proxy:8080", "http://proxy:8080/api/v10"),
    ("http://proxy:8080/", "http://proxy:8080/api/v10"),
    ("http://127.0.0.1:9/api/v10", "http://127.0.0.1:9/api/v10"),
    ("https://rest.example/api/v9/", "https://rest.example/api/v9"),
])
def test_api_base_override(value: str, expected: str) -> None:
    assert rest_base(value) == expected
