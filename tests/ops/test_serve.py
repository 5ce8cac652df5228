"""Long-running commands serve metrics and run the janitor beside the adapter."""

from __future__ import annotations

import asyncio

import aiohttp

from bot.domain import ThreadKey
from bot.ops.serve import extras
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import MakeRuntime, free_port
from tests.support.threads import age, start


async def test_extras_serve_metrics_and_run_the_janitor(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    port = free_port()
    rt = await make_runtime(metrics_port=port, janitor_interval="1s", thread_idle_ttl="1h")
    key = ThreadKey("slack", "T1", "C1", "U1")
    thread_id = await start(rt, key, "m1")
    await age(rt, key, 7200)
    async with extras(rt), aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            body = await resp.text()
        assert resp.status == 200 and 'threadkeeper_messages_total{platform="slack"} 1.0' in body
        for _ in range(300):
            if fake_openai.conversations[thread_id].deleted:
                break
            await asyncio.sleep(0.02)
    assert fake_openai.conversations[thread_id].deleted
    assert await rt.store.get_thread(key) is None
