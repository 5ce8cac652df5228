"""Discord adapter setup end to end: intents, sharding, command sync, lifecycle, invite URL, API base."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import discord
import discord.http
import pytest

from adapters.discord import invite_url, print_invite_url, rest_base, run
from adapters.discord.commands import flag_name
from bot.config import ConfigError, load_settings
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.support.discord import StartBot, wait_answer
from tests.support.fixtures import MakeRuntime
from tests.support.paths import REPO_ROOT


async def test_listed_channel_answers_every_message(fake_discord: FakeDiscord, start_bot: StartBot) -> None:
    await start_bot(discord_channels=fake_discord.channel_id)
    await fake_discord.send_guild("no mention needed here")
    [answer] = await wait_answer(fake_discord, fake_discord.channel_id, text="echo: no mention needed here")
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
    assert [c["name"] for c in fake_discord.commands[None]] == ["forget", "memory", "ask"]
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
    await fake_discord.wait_identified()
    sent = await fake_discord.send_dm("before shutdown")
    await wait_answer(fake_discord, sent["channel_id"], text="echo: before shutdown")
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


def test_cli_prints_the_invite_url(tmp_path: Path) -> None:
    token = base64.urlsafe_b64encode(b"555000111").decode().rstrip("=") + ".Gabcde.signature"
    env = {**os.environ, "DISCORD_TOKEN": token, "DISCORD_OPEN_THREADS": "true",
           "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", "bot", "discord", "--invite-url"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    query = parse_qs(urlparse(done.stdout.strip()).query)
    assert query["client_id"] == ["555000111"]
    assert int(query["permissions"][0]) & (1 << 35)  # threads are on: it may open them


@pytest.mark.parametrize(("value", "expected"), [
    ("http://proxy:8080", "http://proxy:8080/api/v10"),
    ("http://proxy:8080/", "http://proxy:8080/api/v10"),
    ("http://127.0.0.1:9/api/v10", "http://127.0.0.1:9/api/v10"),
    ("https://rest.example/api/v9/", "https://rest.example/api/v9"),
])
def test_api_base_override(value: str, expected: str) -> None:
    assert rest_base(value) == expected


async def test_cli_answers_then_exits_cleanly_on_sigterm(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, redis_url: str, prefix: str
) -> None:
    env = {**os.environ, "DISCORD_TOKEN": fake_discord.token, "DISCORD_API_BASE": fake_discord.url,
           "OPENAI_API_KEY": "test", "OPENAI_MODEL": "gpt-test", "OPENAI_BASE_URL": fake_openai.base_url,
           "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "SHUTDOWN_GRACE": "5s"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "discord", env=env, cwd=REPO_ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await fake_discord.wait_identified(within=30)
        sent = await fake_discord.send_dm("hello from the CLI")
        [answer] = await wait_answer(fake_discord, sent["channel_id"], text="echo: hello from the CLI")
        assert answer["content"] == "echo: hello from the CLI"
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        await fake_discord.wait_for(lambda: fake_discord.connected == 0)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
