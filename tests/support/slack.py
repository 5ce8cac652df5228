"""The Slack adapter under test: the real Bolt app behind the loopback Slack, driven by signed requests."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from adapters.slack import SlackAdapter
from bot.runtime import Runtime
from tests.fakes.slack_server import (
    FakeSlack,
    Message,
    dm_event,
    event_envelope,
    sign,
)
from tests.support.fixtures import MakeRuntime, free_port
from tests.support.serving import post_when_served

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"

JSON = dict[str, Any]

@dataclass
class Slack:
    adapter: SlackAdapter
    fake: FakeSlack
    runtime: Runtime
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.runtime.settings.port}"

    async def post(self, body: str, content_type: str, headers: dict[str, str]) -> tuple[int, str]:
        async with self.http.post(f"{self.url}/slack/events", data=body.encode(),
                                  headers={"Content-Type": content_type, **headers}) as resp:
            return resp.status, await resp.text()

    async def event(self, envelope: JSON, *, retry: int | None = None, secret: str = SECRET,
                    timestamp: int | None = None) -> int:
        body = json.dumps(envelope)
        headers = sign(body, secret, timestamp)
        if retry is not None:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        status, _ = await self.post(body, "application/json", headers)
        return status

    async def command(self, form: dict[str, str]) -> tuple[int, str]:
        body = urlencode(form)
        return await self.post(body, "application/x-www-form-urlencoded", sign(body, SECRET))

    async def answers(self, channel: str, thread_ts: str | None, count: int = 1) -> list[Message]:
        """The bot's messages in a thread, once there are ``count`` of them and all are final."""
        def ready() -> bool:
            found = self.fake.in_thread(channel, thread_ts)
            return len(found) >= count and not any(m.streaming for m in found)

        await self.fake.wait_for(ready)
        return self.fake.in_thread(channel, thread_ts)

StartSlack = Callable[..., Awaitable[Slack]]

@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake

@pytest.fixture
async def start_slack(make_runtime: MakeRuntime, fake_slack: FakeSlack) -> AsyncIterator[StartSlack]:
    started: list[Slack] = []
    async with aiohttp.ClientSession() as http:

        async def start(*, update_interval: float = 0.02, deliver_within: float | None = None,
                        **overrides: Any) -> Slack:
            settings: JSON = {"slack_bot_token": "xoxb-test", "slack_signing_secret": SECRET,
                              "slack_api_url": fake_slack.api_url, "port": free_port(), **overrides}
            runtime = await make_runtime(**settings)
            within = {} if deliver_within is None else {"deliver_within": deliver_within}
            adapter = SlackAdapter(runtime, update_interval=update_interval, host="127.0.0.1", **within)
            await adapter.start()
            started.append(Slack(adapter, fake_slack, runtime, http))
            return started[-1]

        yield start
        for slack in started:
            await slack.adapter.stop(5.0)

@pytest.fixture
async def slack(start_slack: StartSlack) -> Slack:
    return await start_slack()


async def answer_one_dm(env: dict[str, str], port: int, cwd: Path, fake_slack: FakeSlack,
                        text: str) -> tuple[JSON, str]:
    """``python -m bot slack`` (HTTP mode, ``env``) answers one DM in its own thread, then stops on SIGTERM with
    exit code 0 and no traceback; the DM's event and the process's stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "slack", cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    event = dm_event(text)
    body = json.dumps(event_envelope(event))
    try:
        await post_when_served(f"http://127.0.0.1:{port}/slack/events", body,
                               {"Content-Type": "application/json", **sign(body, SECRET)}, proc)

        def answered() -> bool:
            found = fake_slack.in_thread(event["channel"], event["ts"])
            return bool(found) and not any(m.streaming for m in found)

        await fake_slack.wait_for(answered)
        [answer] = fake_slack.in_thread(event["channel"], event["ts"])
        assert text in answer.text
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        stderr = err.decode()
        assert proc.returncode == 0, stderr[-2000:]
        assert "Traceback" not in stderr
        return event, stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
