"""An operator's first hour, at the command line: what used to start half-broken or end in a traceback.

* a ``REDIS_URL`` that does not answer, is no URL, or is the wrong kind of Redis stops every
  command that would use it, with one line and exit code 2;
* ``/healthz`` is liveness, ``/readyz`` readiness (503 while Redis is unreachable);
* a busy ``PORT`` or ``METRICS_PORT`` is one line, not an ``OSError`` traceback;
* ``threads --help`` prints the help; ``threads stats`` into a closed pipe exits quietly;
* ``janitor`` and ``threads`` refuse to run on the embedded store.

Each test runs the real ``python -m bot`` in a subprocess with an environment built from scratch.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from bot.ops.metrics_http import start_metrics_server
from tests.fakes.slack_server import FakeSlack
from tests.support.fixtures import MakeRuntime, free_port, start_redis_server
from tests.support.paths import REPO_ROOT
from tests.support.serving import healthy, until_served

ROOT = REPO_ROOT
DOWN = "redis://:hunter2-secret@127.0.0.1:1/0"
TOKENS = {"OPENAI_API_KEY": "sk-test", "SLACK_BOT_TOKEN": "xoxb-test-token", "DISCORD_TOKEN": "discord-test-token"}
COMMANDS = [["slack"], ["discord"], ["janitor"], ["threads", "stats"], ["console"]]


def environ(cwd: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(cwd), "PYTHONPATH": str(ROOT), **(env or {})}


def bot(*args: str, cwd: Path, env: dict[str, str] | None = None, **run: Any) -> subprocess.CompletedProcess[str]:
    """``python -m bot ARGS`` in ``cwd`` with only PATH, HOME, PYTHONPATH and ``env``."""
    options: dict[str, Any] = {"stdin": subprocess.DEVNULL, "capture_output": True, **run}
    return subprocess.run([sys.executable, "-m", "bot", *args], text=True, env=environ(cwd, env), cwd=cwd,
                          timeout=60, **options)


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stderr.strip().splitlines()


def without_db(url: str) -> str:
    """The URL of database 0 (a cluster has no other)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", parts.query, parts.fragment))


def busy_port() -> tuple[socket.socket, int]:
    """A port something else listens on (every interface, as the bot binds)."""
    sock = socket.socket()
    sock.bind(("0.0.0.0", 0))
    sock.listen()
    return sock, int(sock.getsockname()[1])


@pytest.fixture
def shared(redis_url: str, prefix: str) -> dict[str, str]:
    """Settings of a working Redis, for the checks that come after it."""
    return {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix}


@pytest.fixture(scope="module")
def cluster_node() -> Iterator[str]:
    """A Redis started with cluster mode on (one node, no slots: PING and INFO answer)."""
    proc, url = start_redis_server(None, "--cluster-enabled", "yes")
    yield url
    proc.terminate()
    proc.wait(5)


# -- 1. Redis is checked at start ---------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_unreachable_redis_stops_every_command(command: list[str], tmp_path: Path) -> None:
    result = bot(*command, cwd=tmp_path, env={**TOKENS, "REDIS_URL": DOWN})
    assert result.returncode == 2
    assert stderr_lines(result) == ["configuration error: REDIS_URL: cannot connect to redis://127.0.0.1:1/0 "
                                    "(Connection refused)"]
    assert "hunter2" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("url", "line"),
    [
        ("notaurl", "REDIS_URL: notaurl is not a usable Redis URL (it needs redis://, rediss:// or unix://)"),
        ("redis://:hunter2-secret@127.0.0.1:port/0",
         "REDIS_URL: redis://127.0.0.1:port/0 is not a usable Redis URL "
         "(Port could not be cast to integer value as 'port')"),
    ],
)
def test_a_redis_url_that_is_no_url_is_one_line(url: str, line: str, tmp_path: Path) -> None:
    result = bot("janitor", cwd=tmp_path, env={"REDIS_URL": url})
    assert result.returncode == 2
    assert stderr_lines(result) == [f"configuration error: {line}"]
    assert "hunter2" not in result.stderr


def test_cluster_setting_against_a_single_server(redis_url: str, tmp_path: Path) -> None:
    url = without_db(redis_url)
    result = bot("janitor", cwd=tmp_path, env={"REDIS_URL": url, "REDIS_CLUSTER": "true"})
    assert result.returncode == 2
    assert stderr_lines(result) == [
        f"configuration error: REDIS_CLUSTER: {url} is a single Redis server, not a cluster; unset REDIS_CLUSTER "
        "(and write redis://, not redis+cluster://), or point REDIS_URL at a cluster"
    ]
    # The redis+cluster:// spelling is the same setting; a database number is refused first.
    result = bot("threads", "stats", cwd=tmp_path, env={"REDIS_URL": url.replace("redis://", "redis+cluster://")})
    assert result.returncode == 2 and "is a single Redis server, not a cluster" in result.stderr
    result = bot("janitor", cwd=tmp_path, env={"REDIS_URL": url + "/9", "REDIS_CLUSTER": "true"})
    assert stderr_lines(result) == [
        f"configuration error: REDIS_URL: {url}/9 is not a usable Redis URL (a cluster has only database 0)"
    ]


def test_a_cluster_node_without_the_cluster_setting(cluster_node: str, tmp_path: Path) -> None:
    result = bot("threads", "stats", cwd=tmp_path, env={"REDIS_URL": cluster_node})
    assert result.returncode == 2
    assert stderr_lines(result) == [
        f"configuration error: REDIS_CLUSTER: {cluster_node} is a Redis Cluster node, but REDIS_CLUSTER is off; "
        "set REDIS_CLUSTER=true, or write the URL as redis+cluster://"
    ]


def test_a_reachable_redis_lets_the_command_run(shared: dict[str, str], tmp_path: Path) -> None:
    result = bot("threads", "stats", "--json", cwd=tmp_path, env=shared)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('{"threads": 0')


# -- 2. /healthz is liveness, /readyz readiness --------------------------------------------------------


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def test_core_ready_and_readyz_with_redis_down(make_runtime: MakeRuntime) -> None:
    runtime = await make_runtime(redis_url=DOWN)
    assert await asyncio.wait_for(runtime.core.ready(), 3) == (
        False, {"ok": False, "in_flight": 0, "backend": "conversations", "redis": False})
    server = await start_metrics_server(runtime, free_port(), host="127.0.0.1")
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{server.port}"
            assert await get(http, f"{base}/healthz") == (200, {"ok": True, "in_flight": 0,
                                                                "backend": "conversations"})
            status, body = await get(http, f"{base}/readyz")
            assert status == 503 and body["redis"] is False and body["ok"] is False
    finally:
        await server.stop()


async def test_core_ready_when_redis_answers(make_runtime: MakeRuntime) -> None:
    runtime = await make_runtime()
    assert await runtime.core.ready() == (True, {"ok": True, "in_flight": 0, "backend": "conversations",
                                                 "redis": True})
    await runtime.core.drain(0.1)
    assert (await runtime.core.ready())[0] is False  # draining: neither live nor ready


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def slack_http(fake: FakeSlack, **env: str) -> dict[str, str]:
    """``python -m bot slack`` in HTTP mode against the fake Slack Web API."""
    return {**TOKENS, "SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5", "SLACK_API_URL": fake.api_url,
            "OPENAI_BASE_URL": "http://127.0.0.1:1/v1", **env}


async def test_readyz_follows_redis_while_healthz_stays_up(
    fake_slack: FakeSlack, prefix: str, tmp_path: Path
) -> None:
    """The real Slack bot with METRICS_PORT: Redis stops -> /readyz 503, /healthz still 200; SIGTERM -> exit 0."""
    redis_proc, redis_url = start_redis_server()
    metrics = free_port()
    env = slack_http(fake_slack, REDIS_URL=redis_url, REDIS_PREFIX=prefix, PORT=str(free_port()),
                     METRICS_PORT=str(metrics), SHUTDOWN_GRACE="1s")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "slack", cwd=tmp_path, env=environ(tmp_path, env),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{metrics}"
    try:
        async with aiohttp.ClientSession() as http:
            await until_served(lambda: healthy(http, f"{base}/healthz"), proc, tries=300,
                               never=f"{base}/healthz never answered")
            status, body = await get(http, f"{base}/readyz")
            assert (status, body["redis"], body["ok"]) == (200, True, True)
            redis_proc.terminate()
            redis_proc.wait(5)
            status, body = await get(http, f"{base}/readyz")
            assert (status, body["redis"], body["ok"]) == (503, False, False)
            assert (await get(http, f"{base}/healthz"))[0] == 200
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert b"Traceback" not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if redis_proc.poll() is None:
            redis_proc.terminate()
            redis_proc.wait(5)


# -- 3. a busy PORT or METRICS_PORT ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["slack", "discord"])
def test_busy_metrics_port_is_one_line(command: str, shared: dict[str, str], tmp_path: Path) -> None:
    sock, port = busy_port()
    with sock:
        env = {**TOKENS, **shared, "SLACK_APP_TOKEN": "xapp-test", "METRICS_PORT": str(port)}
        result = bot(command, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert stderr_lines(result) == [f"configuration error: METRICS_PORT: port {port} is already in use"]


async def test_busy_slack_port_is_one_line(fake_slack: FakeSlack, shared: dict[str, str], tmp_path: Path) -> None:
    sock, port = busy_port()
    with sock:
        env = slack_http(fake_slack, **shared, PORT=str(port))
        result = await asyncio.to_thread(bot, "slack", cwd=tmp_path, env=env)
    assert result.returncode == 2
    # Bolt warns that SLACK_BOT_TOKEN in the environment goes unused (the adapter passes its own client).
    lines = [line for line in stderr_lines(result) if "WARNING slack_bolt.AsyncApp: As you gave `client`" not in line]
    assert lines == [f"configuration error: PORT: port {port} is already in use"]
    assert fake_slack.count("auth.test") == 1  # the token was checked; only then the port


# -- 4. threads --help, and a reader that leaves early ---------------------------------------------------


@pytest.mark.parametrize("args", [["threads", "--help"], ["threads", "-h"], ["threads", "list", "--help"]])
def test_threads_help(args: list[str], tmp_path: Path) -> None:
    result = bot(*args, cwd=tmp_path)  # no settings at all: help needs none
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m bot threads{' list' if 'list' in args else ''}")
    assert result.stderr == ""


def test_other_commands_still_refuse_unknown_options(tmp_path: Path) -> None:
    result = bot("console", "--bogus", cwd=tmp_path)
    assert result.returncode == 2
    assert stderr_lines(result)[-1] == "python -m bot: error: unrecognized arguments: --bogus"


def test_threads_usage_errors_need_no_redis(tmp_path: Path) -> None:
    result = bot("threads", "purge", "--idle-over", "3", cwd=tmp_path)
    assert result.returncode == 2
    assert stderr_lines(result) == ['threads: error: --idle-over: "3" has no unit; write 3s, 3m, 3h or 3d']


def test_threads_stats_into_a_closed_pipe_exits_quietly(shared: dict[str, str], tmp_path: Path) -> None:
    """``python -m bot threads stats | head -0``: the reader is gone before the first write."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = bot("threads", "stats", cwd=tmp_path, env=shared, stdout=write, stderr=subprocess.PIPE,
                     capture_output=False)
    finally:
        os.close(write)
    assert result.returncode == 1
    assert result.stderr == ""


# -- 5. janitor and threads need a shared Redis ----------------------------------------------------------


@pytest.mark.parametrize("command", [["janitor"], ["threads", "stats"]], ids=lambda c: c[0])
def test_janitor_and_threads_refuse_the_embedded_store(command: list[str], tmp_path: Path) -> None:
    result = bot(*command, cwd=tmp_path, env={"OPENAI_API_KEY": "sk-test"})
    assert result.returncode == 2
    assert stderr_lines(result) == [f"configuration error: REDIS_URL: {command[0]} needs a shared Redis; set REDIS_URL"]
