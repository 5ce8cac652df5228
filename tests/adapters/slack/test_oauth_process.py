"""``python -m bot slack`` with Slack OAuth, as an operator starts it: refused in one line, or serving installs."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
from cryptography.fernet import Fernet

from tests.fakes.slack_oauth import CLIENT_ID, CLIENT_SECRET
from tests.fakes.slack_server import FakeSlack
from tests.support.fixtures import free_port
from tests.support.paths import REPO_ROOT
from tests.support.serving import until_served
from tests.support.slack import SECRET


def environ(cwd: Path, **env: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(cwd), "PYTHONPATH": str(REPO_ROOT),
            "OPENAI_API_KEY": "sk-test", "SLACK_CLIENT_ID": CLIENT_ID, "SLACK_CLIENT_SECRET": CLIENT_SECRET,
            "SLACK_SIGNING_SECRET": SECRET, **env}


async def slack(cwd: Path, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "slack", cwd=cwd, env=environ(cwd, **env), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_oauth_without_a_usable_key_or_redis_exits_2_with_one_line(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    for env, line in (
        ({}, "configuration error: TOKEN_ENCRYPTION_KEY is required for Slack OAuth (bot tokens are kept encrypted "
             "in Redis); make one with: "),
        ({"TOKEN_ENCRYPTION_KEY": "0123456789abcdef"}, "configuration error: TOKEN_ENCRYPTION_KEY is not a Fernet "
                                                       "key (it is not 32 url-safe base64-encoded bytes); make one"),
        ({"TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(), "REDIS_URL": ""},
         "configuration error: REDIS_URL is required for Slack OAuth (installations must outlive a restart"),
    ):
        env = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "PORT": str(free_port()), **env}
        proc = await slack(tmp_path, **env)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 2, err.decode()
        assert out == b"" and len(err.decode().splitlines()) == 1, err.decode()
        assert err.decode().startswith(line) and "0123456789abcdef" not in err.decode()


async def test_the_bot_serves_the_install_page_with_oauth(
    tmp_path: Path, redis_url: str, prefix: str, fake_slack: FakeSlack
) -> None:
    port = free_port()
    proc = await slack(tmp_path, REDIS_URL=redis_url, REDIS_PREFIX=prefix, PORT=str(port),
                       TOKEN_ENCRYPTION_KEY=Fernet.generate_key().decode(), SLACK_API_URL=fake_slack.api_url,
                       SHUTDOWN_GRACE="1s")
    try:
        async with aiohttp.ClientSession() as http:

            async def install() -> str:
                async with http.get(f"http://127.0.0.1:{port}/slack/install", allow_redirects=False) as resp:
                    assert resp.status == 302
                    return resp.headers["Location"]

            location = await until_served(install, proc)  # it imports and connects first
        assert location.startswith(f"{fake_slack.base}/oauth/v2/authorize?")
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert "Traceback" not in err.decode() and "slack_bolt" not in err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
