"""What the first hour's stderr says, read from the real ``python -m bot`` commands.

* an ``OPENAI_BASE_URL`` where nothing listens is "cannot reach", for the user and in one log line
  that names the setting, never "took too long" (openai's aiohttp transport reports a refused
  connection as a connect *timeout*);
* ``slack`` and ``discord`` start without the libraries' notes about things the bot does not use
  (Bolt's unused ``SLACK_BOT_TOKEN``, discord.py's missing voice support).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.assistants.errors import UNREACHABLE_SENTENCE
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack
from tests.support.fixtures import free_port
from tests.support.paths import REPO_ROOT
from tests.support.serving import healthy, until_served

ROOT = REPO_ROOT
BOLT_NOTE = "As you gave `client` as well, `token` will be unused"
VOICE_NOTE = "voice will NOT be supported"


def environ(cwd: Path, **env: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(cwd), "PYTHONPATH": str(ROOT), **env}


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


async def start(command: str, cwd: Path, env: dict[str, str], *, stdin: bool = False) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", command, cwd=cwd, env=environ(cwd, **env),
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def stop(proc: asyncio.subprocess.Process) -> str:
    """SIGTERM, then everything it wrote on stderr; it must exit 0."""
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    return err.decode()


@pytest.mark.parametrize("backend", ["conversations", "chat"])
async def test_a_server_that_is_not_there_is_unreachable_not_slow(backend: str, tmp_path: Path) -> None:
    closed = free_port()  # bound a moment ago and released: nothing listens there
    env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": f"http://127.0.0.1:{closed}/v1",
           "ASSISTANT_BACKEND": backend, "OPENAI_MAX_RETRIES": "0"}
    proc = await start("console", tmp_path, env, stdin=True)
    out, err = await asyncio.wait_for(proc.communicate(b"hello?\n"), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines() == [UNREACHABLE_SENTENCE]
    log = err.decode()
    [named] = [line for line in log.splitlines() if "OPENAI_BASE_URL" in line]
    assert f"cannot reach the assistant server at http://127.0.0.1:{closed} (connection refused)" in named
    assert "timed out" not in log and "timeout" not in log and "took too long" not in log


async def test_slack_starts_without_bolts_unused_token_note(fake_slack: FakeSlack, tmp_path: Path) -> None:
    port = free_port()
    env = {"OPENAI_API_KEY": "sk-test", "SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": fake_slack.api_url,
           "SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5", "PORT": str(port), "SHUTDOWN_GRACE": "1s"}
    proc = await start("slack", tmp_path, env)
    try:
        async with aiohttp.ClientSession() as http:
            await until_served(lambda: healthy(http, f"http://127.0.0.1:{port}/healthz"), proc)
        err = await stop(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "slack_bolt" not in err and BOLT_NOTE not in err
    assert "Traceback" not in err


async def test_discord_starts_without_the_voice_note(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "sk-test", "DISCORD_TOKEN": fake_discord.token, "DISCORD_API_BASE": fake_discord.url,
           "SHUTDOWN_GRACE": "1s"}
    proc = await start("discord", tmp_path, env)
    try:
        await fake_discord.wait_identified(within=30)
        err = await stop(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert VOICE_NOTE not in err and "PyNaCl" not in err
    assert "Traceback" not in err
