"""Several worker processes on one Redis behave as one bot."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from tests.fakes.openai_server import FakeOpenAI
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT


async def run_workers(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Start every worker, release them at once, and collect all their results."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REDIS_", "RATE_", "USER_DAILY"))}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.worker",
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
        )
        for config in configs
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    results: list[dict[str, Any]] = []
    for proc in procs:
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0
        results += [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    return results


def settings(fake: FakeOpenAI, redis_url: str, prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "openai_api_key": "test",
        "openai_base_url": fake.base_url,
        "openai_model": "gpt-test",
        "memory": "off",  # these tests count assistant calls; memory folds would add their own
        **extra,
    }


async def test_two_workers_with_the_same_deliveries_answer_once(
    fake_openai: FakeOpenAI, redis_url: str, prefix: str
) -> None:
    """Slack spreads retries across connections: both workers see every event."""
    fake_openai.latency = 0.02
    messages = [["slack", "T1", "C1", "U1", f"message {i}", f"Ev{i}"] for i in range(12)]
    config = {"settings": settings(fake_openai, redis_url, prefix), "messages": messages}
    results = await run_workers([config, config])
    answered = [r for r in results if r["answer"] is not None]
    assert sorted(r["id"] for r in answered) == sorted(f"Ev{i}" for i in range(12))
    assert all(r["error"] is None for r in results)
    assert fake_openai.count("POST", "/v1/conversations") == 1
    assert fake_openai.count("POST", "/v1/responses") == 12


async def test_rate_limit_holds_across_two_workers(fake_openai: FakeOpenAI, redis_url: str, prefix: str) -> None:
    base = settings(fake_openai, redis_url, prefix, rate_limit="5/10m")
    one = [["discord", "G1", f"C{i % 3}", "U1", "hi", f"a{i}"] for i in range(6)]
    two = [["discord", "G1", f"C{i % 3}", "U1", "hi", f"b{i}"] for i in range(6)]
    results = await run_workers([{"settings": base, "messages": one}, {"settings": base, "messages": two}])
    answered = [r for r in results if r["answer"]]
    told = [r for r in results if r["error"] == "RateLimited"]
    silent = [r for r in results if r["answer"] is None and r["error"] is None]
    assert (len(answered), len(told), len(silent)) == (5, 1, 6)
    assert fake_openai.count("POST", "/v1/responses") == 5


async def test_daily_token_budget_holds_across_two_workers(
    fake_openai: FakeOpenAI, redis_url: str, prefix: str
) -> None:
    """Admission stops at the first message that finds the shared daily total at or over the budget."""
    base = settings(fake_openai, redis_url, prefix, user_daily_tokens=150)
    one = [["slack", "T1", "C1", "U1", "hello there", f"a{i}"] for i in range(6)]
    two = [["slack", "T1", "C1", "U1", "hello there", f"b{i}"] for i in range(6)]
    results = await run_workers([{"settings": base, "messages": one}, {"settings": base, "messages": two}])
    costs = [r["usage"]["input_tokens"] + r["usage"]["output_tokens"] for r in fake_openai.responses.values()]
    answered = [r for r in results if r["answer"]]
    assert len(answered) == len(costs) < 12
    assert sum(costs[:-1]) < 150 <= sum(costs)
    assert len([r for r in results if r["error"] == "BudgetExceeded"]) == 1
    assert all(r["answer"] or r["error"] in (None, "BudgetExceeded") for r in results)
