"""Shared fixtures: a real Redis, the loopback fake OpenAI, and a runtime factory.

Redis: ``TEST_REDIS_URL`` when set, else the server on 127.0.0.1:6379 (db 9),
else a throwaway ``redis-server`` on a free port. Every test gets its own key
prefix and its keys are deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis

from bot.config import Settings, load_settings
from bot.runtime import Runtime, build_runtime
from tests.fakes.openai_server import FakeOpenAI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis_server(port: int | None = None, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway redis-server on loopback; returns (process, url) once it answers PING.

    A free port can be taken by another process between our probe and redis-server's bind (test runs
    share this machine), and a loaded machine starts it slowly: a server that exits is started again on
    another port, and each start gets a deadline of its own instead of a fixed number of tries.
    """
    binary = shutil.which("redis-server")
    if not binary:
        pytest.skip("redis-server is not installed")
    for _ in range(5):
        chosen = port or free_port()
        workdir = tempfile.mkdtemp(prefix="tk-redis-")
        args = [binary, "--port", str(chosen), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", workdir]
        proc = subprocess.Popen([*args, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=chosen, socket_connect_timeout=0.5, socket_timeout=0.5)
        deadline = time.monotonic() + 30
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    # Ours, not another run's server that holds the port (ours then exits).
                    if client.ping() and client.info("server").get("process_id") == proc.pid:
                        return proc, f"redis://127.0.0.1:{chosen}/0"
                except redis.RedisError:
                    time.sleep(0.02)
        finally:
            client.close()
        proc.kill()
        proc.wait(5)
        if port:
            break
    raise RuntimeError("could not start a throwaway redis-server")


def _answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        ok = bool(client.ping())
        client.close()
        return ok
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    if _answers("redis://127.0.0.1:6379/9"):
        yield "redis://127.0.0.1:6379/9"
        return
    proc, url = start_redis_server()
    yield url
    proc.terminate()
    proc.wait(5)


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are removed afterwards."""
    name = f"tkt{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    batch = list(client.scan_iter(match=f"{name}:*", count=1000))
    for start in range(0, len(batch), 500):
        client.delete(*batch[start : start + 500])
    client.close()


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


MakeRuntime = Callable[..., Awaitable[Runtime]]


def settings_for_test(redis_url: str, prefix: str, base_url: str, **overrides: Any) -> Settings:
    """Settings for tests: never reads a developer's ``.env``."""
    values: dict[str, Any] = {
        "_env_file": None,
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "openai_api_key": "test",
        "openai_base_url": base_url,
        "openai_model": "gpt-test",
        "openai_timeout": 5.0,
        "openai_max_retries": 2,
        # Memory folds add their own assistant calls; tests that count calls opt in (tests/core/test_memory.py).
        "memory": "off",
        # Most Slack tests were written for top-level DM replies and count chat.* calls only; the agent
        # experience (the default: DMs in threads of their own, the loading status) opts in (test_agent.py).
        "slack_agent_view": False,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
async def make_runtime(redis_url: str, prefix: str, fake_openai: FakeOpenAI) -> AsyncIterator[MakeRuntime]:
    """``await make_runtime(**setting_overrides)`` -> a Runtime on the real Redis and the fake OpenAI."""
    made: list[Runtime] = []

    async def factory(**overrides: Any) -> Runtime:
        url = overrides.pop("redis_url", redis_url)
        runtime = build_runtime(settings_for_test(url, prefix, fake_openai.base_url, **overrides))
        made.append(runtime)
        return runtime

    yield factory
    for runtime in made:
        await runtime.close()
