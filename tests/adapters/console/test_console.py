"""The console adapter driven through a pipe, as a user's script would."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import redis

from tests.fakes.openai_server import FakeOpenAI
from tests.support.console import base_env, run_console
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT






async def test_console_pipe_one_reply_per_line(fake_openai: FakeOpenAI, redis_url: str, prefix: str) -> None:
    env = {**base_env(fake_openai), "REDIS_URL": redis_url, "REDIS_PREFIX": prefix}
    code, out, err = await run_console(env, "hello\n\n/forget\nagain\n", "--user", "alice")
    assert code == 0, err
    assert out.splitlines() == ["echo: hello", "Forgot 1 conversation.", "echo: again"]
    assert len(fake_openai.conversations) == 2
    first, second = fake_openai.conversations.values()
    assert first.deleted and not second.deleted
    code, out, _ = await run_console(env, "still me\n", "--user", "alice")
    assert out.splitlines() == ["echo: still me"]
    assert len(fake_openai.conversations) == 2


async def test_console_without_redis_uses_the_embedded_store(fake_openai: FakeOpenAI) -> None:
    code, out, err = await run_console(base_env(fake_openai), "one\ntwo\n")
    assert code == 0, err
    assert out.splitlines() == ["echo: one", "echo: two"]
    assert "REDIS_URL is not set" in err and "lost on restart" in err
    assert len(fake_openai.conversations) == 1


async def test_console_errors_are_one_sentence(fake_openai: FakeOpenAI) -> None:
    env = {**base_env(fake_openai), "OPENAI_MODEL": "gpt-missing"}
    code, out, err = await run_console(env, "hi\n")
    assert code == 0
    assert out.splitlines() == ["The assistant is not configured correctly; the operator has been told."]
    assert "OPENAI_MODEL" in err


async def test_sigterm_lets_the_answer_in_flight_finish(
    fake_openai: FakeOpenAI, redis_url: str, prefix: str
) -> None:
    env = {**base_env(fake_openai), "REDIS_URL": redis_url, "REDIS_PREFIX": prefix}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "DISCORD_", "REDIS_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "console", "--user", "bob",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**clean, **env}, cwd=ROOT,
    )
    assert proc.stdin is not None
    await asyncio.wait_for(run_console(env, "warm up\n", "--user", "bob"), 60)
    fake_openai.latency = 1.0
    arrived = len(fake_openai.requests)
    proc.stdin.write(b"slow question\n")
    await proc.stdin.drain()
    for _ in range(600):
        if any(r.path == "/v1/responses" for r in fake_openai.requests[arrived:]):
            break
        await asyncio.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    assert out.decode().splitlines() == ["echo: slow question"]
    client = redis.Redis.from_url(redis_url)
    assert not list(client.scan_iter(match=f"{prefix}:lock:*"))
    client.close()


async def test_console_reads_a_regular_file(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    script = tmp_path / "lines.txt"
    script.write_text("first\nsecond\n", encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "DISCORD_", "REDIS_"))}
    with script.open("rb") as stdin:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "console",
            stdin=stdin, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**clean, **base_env(fake_openai)}, cwd=ROOT,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    assert out.decode().splitlines() == ["echo: first", "echo: second"]
