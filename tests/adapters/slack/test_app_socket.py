"""Socket Mode and the process entry point, end to end against the loopback fake Slack.

The fake's ``apps.connections.open`` hands out a websocket URL it serves itself; the real Socket Mode
client connects, receives an ``events_api`` envelope, acknowledges it, and the answer goes out through
the fake Web API.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest

from adapters.slack import SlackAdapter, run
from bot.config import ConfigError
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack, dm_event, event_envelope
from tests.support.fixtures import MakeRuntime, free_port
from tests.support.serving import healthy, until_served


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


async def test_socket_mode_connects_receives_one_event_acks_and_answers(
    make_runtime: MakeRuntime, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    runtime = await make_runtime(slack_bot_token="xoxb-test", slack_app_token="xapp-1-test",
                                 slack_api_url=fake_slack.api_url, port=free_port())
    adapter = SlackAdapter(runtime, update_interval=0.02, host="127.0.0.1")
    assert adapter.mode == "socket"
    await adapter.start()
    try:
        [opened] = [c for c in fake_slack.calls if c.method == "apps.connections.open"]
        assert opened.token == "xapp-1-test"
        await fake_slack.wait_for(lambda: fake_slack.open_sockets == 1)

        envelope = event_envelope(dm_event("over the socket", channel="D11"))
        envelope_id = await fake_slack.push_event(envelope)
        await fake_slack.wait_for(lambda: any(a.get("envelope_id") == envelope_id for a in fake_slack.acks))
        await adapter.settle()
        assert [m.text for m in fake_slack.in_thread("D11", None)] == ["echo: over the socket"]

        retry_id = await fake_slack.push_event(envelope, retry_attempt=1, retry_reason="timeout")
        await fake_slack.wait_for(lambda: any(a.get("envelope_id") == retry_id for a in fake_slack.acks))
        await adapter.settle()
        assert len(fake_slack.replies()) == 1 and fake_openai.count("POST", "/v1/responses") == 1

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{runtime.settings.port}/healthz") as resp:
                assert resp.status == 200 and (await resp.json())["mode"] == "socket"
            async with http.post(f"http://127.0.0.1:{runtime.settings.port}/slack/events", data=b"{}") as resp:
                assert resp.status == 404, "no HTTP events endpoint in Socket Mode"
    finally:
        await adapter.stop(5.0)
    await fake_slack.wait_for(lambda: fake_slack.open_sockets == 0)


@pytest.mark.parametrize(("method", "variable"), [("auth.test", "SLACK_BOT_TOKEN"),
                                                  ("apps.connections.open", "SLACK_APP_TOKEN")])
async def test_a_refused_token_stops_the_start_with_one_line_naming_it(
    make_runtime: MakeRuntime, fake_slack: FakeSlack, method: str, variable: str
) -> None:
    runtime = await make_runtime(slack_bot_token="xoxb-test", slack_app_token="xapp-1-test",
                                 slack_api_url=fake_slack.api_url, port=free_port())
    fake_slack.fail_next(method, "invalid_auth")
    adapter = SlackAdapter(runtime, host="127.0.0.1")
    with pytest.raises(ConfigError, match=f"^{variable} was refused by Slack: invalid_auth$"):
        await adapter.start()
    await adapter.stop(1.0)
    assert fake_slack.open_sockets == 0


async def _wait_healthy(port: int) -> None:
    async with aiohttp.ClientSession() as http:
        await until_served(lambda: healthy(http, f"http://127.0.0.1:{port}/healthz"), tries=200, pause=0.025,
                           never="the Slack adapter never became healthy")


async def test_run_finishes_the_answer_in_flight_on_sigterm_then_returns(
    make_runtime: MakeRuntime, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    runtime = await make_runtime(slack_bot_token="xoxb-test", slack_app_token="xapp-1-test",
                                 slack_api_url=fake_slack.api_url, port=free_port(), shutdown_grace=10.0)
    task = asyncio.create_task(run(runtime))
    await _wait_healthy(runtime.settings.port)
    await fake_slack.wait_for(lambda: fake_slack.open_sockets == 1)
    fake_openai.latency = 0.4
    await fake_slack.push_event(event_envelope(dm_event("finish me", channel="D12")))
    await fake_slack.wait_for(lambda: len(fake_slack.acks) == 1)

    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 15.0)
    assert runtime.core.closing
    assert [m.text for m in fake_slack.in_thread("D12", None)] == ["echo: finish me"]
    assert fake_slack.open_sockets == 0


async def test_run_in_http_mode_stops_when_asked(
    make_runtime: MakeRuntime, fake_slack: FakeSlack
) -> None:
    runtime = await make_runtime(slack_bot_token="xoxb-test", slack_signing_secret="secret",
                                 slack_api_url=fake_slack.api_url, port=free_port())
    stop = asyncio.Event()
    task = asyncio.create_task(run(runtime, stop=stop))
    await _wait_healthy(runtime.settings.port)
    stop.set()
    await asyncio.wait_for(task, 10.0)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"http://127.0.0.1:{runtime.settings.port}/healthz")
