"""``/metrics`` and ``/healthz`` over real HTTP after a scripted conversation through the core."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.domain import Incoming, ThreadKey
from bot.errors import Misconfigured
from bot.ops.metrics_http import MetricsServer, maybe_start_metrics_server, start_metrics_server
from bot.runtime import Runtime
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import MakeRuntime, free_port
from tests.support.metrics import scrape

KEY = ThreadKey("slack", "T1", "C1", "U1")




@pytest.fixture
async def runtime(make_runtime: MakeRuntime) -> Runtime:
    return await make_runtime()


@pytest.fixture
async def server(runtime: Runtime) -> AsyncIterator[MetricsServer]:
    started = await start_metrics_server(runtime, free_port(), host="127.0.0.1")
    yield started
    await started.stop()


async def test_metrics_after_a_scripted_conversation(
    runtime: Runtime, server: MetricsServer, fake_openai: FakeOpenAI
) -> None:
    core = runtime.core
    first = await core.handle(Incoming(KEY, "hello", "m1"))
    assert first is not None and first.text == "echo: hello"
    assert await core.handle(Incoming(KEY, "again", "m2")) is not None
    assert await core.handle(Incoming(KEY, "again", "m2")) is None  # a redelivery
    fake_openai.delete_conversation(first.thread_id)
    recovered = await core.handle(Incoming(KEY, "still there?", "m3"))
    assert recovered is not None and recovered.recovered
    await core.forget(KEY)
    fake_openai.fail_next(404, code="model_not_found", message="The model does not exist.",
                          path_prefix="/v1/responses")
    with pytest.raises(Misconfigured):
        await core.handle(Incoming(KEY, "and now?", "m4"))

    async with aiohttp.ClientSession() as http:
        samples = await scrape(http, server)
    assert samples[("threadkeeper_messages_total", (("platform", "slack"),))] == 3
    assert samples[("threadkeeper_duplicates_total", ())] == 1
    assert samples[("threadkeeper_recoveries_total", (("reason", "gone"),))] == 1
    assert samples[("threadkeeper_forgets_total", ())] == 1
    assert samples[("threadkeeper_errors_total", (("kind", "Misconfigured"),))] == 1
    # One latency observation per assistant call, failed ones included.
    sends = fake_openai.count("POST", "/v1/responses")
    assert sends == 5
    assert samples[("threadkeeper_assistant_latency_seconds_count", ())] == sends
    assert samples[("threadkeeper_in_flight", ())] == 0
    assert samples[("threadkeeper_tokens_total", (("kind", "input"),))] > 0


async def test_in_flight_gauge_while_an_answer_streams(runtime: Runtime, server: MetricsServer) -> None:
    """The answer is held at its first streamed delta, so the scrape sees it in flight."""
    reached, release = asyncio.Event(), asyncio.Event()

    async def on_delta(_delta: str) -> None:
        reached.set()
        await release.wait()

    async with aiohttp.ClientSession() as http:
        task = asyncio.create_task(runtime.core.handle(Incoming(KEY, "slowly", "s1"), on_delta))
        await asyncio.wait_for(reached.wait(), 10)
        assert (await scrape(http, server))[("threadkeeper_in_flight", ())] == 1
        async with http.get(f"http://127.0.0.1:{server.port}/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"ok": True, "in_flight": 1, "backend": "conversations"}
        release.set()
        answer = await asyncio.wait_for(task, 10)
        assert answer is not None and answer.text == "echo: slowly"
        assert (await scrape(http, server))[("threadkeeper_in_flight", ())] == 0


async def test_healthz_turns_503_while_draining(runtime: Runtime, server: MetricsServer) -> None:
    assert await runtime.core.drain(1.0)
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server.port}/healthz") as response:
        assert response.status == 503
        assert (await response.json())["ok"] is False


async def test_metrics_port_setting(make_runtime: MakeRuntime) -> None:
    assert await maybe_start_metrics_server(await make_runtime()) is None  # METRICS_PORT=0: off
    port = free_port()
    started = await maybe_start_metrics_server(await make_runtime(metrics_port=port))
    assert started is not None and started.port == port
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            assert "threadkeeper_forgets_total 0.0" in await response.text()
    finally:
        await started.stop()
