"""``EVENT_LOOP``: ``python -m bot slack`` answers and shuts down cleanly on uvloop and on asyncio's loop, and a
uvloop that cannot be imported is one line (``uvloop``) or asyncio's loop (``auto``)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack, dm_event, event_envelope
from tests.support.fixtures import free_port
from tests.support.paths import REPO_ROOT
from tests.support.serving import until_served
from tests.support.slack import SECRET, answer_one_dm


def slack_env(tmp_path: Path, redis_url: str, prefix: str, fake_slack: FakeSlack, fake_openai: FakeOpenAI, *,
              loop: str, path: str = "") -> tuple[dict[str, str], int]:
    port = free_port()
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(p for p in (path, str(REPO_ROOT)) if p),
           "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fake_openai.base_url, "OPENAI_MODEL": "gpt-test",
           "SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": fake_slack.api_url,
           "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "PORT": str(port), "SHUTDOWN_GRACE": "1s",
           "EVENT_LOOP": loop}
    return env, port


@pytest.mark.parametrize(("choice", "runs_on"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")])
async def test_the_slack_bot_answers_on_the_chosen_loop(
    tmp_path: Path, redis_url: str, prefix: str, fake_slack: FakeSlack, fake_openai: FakeOpenAI, choice: str,
    runs_on: str
) -> None:
    env, port = slack_env(tmp_path, redis_url, prefix, fake_slack, fake_openai, loop=choice)
    _, stderr = await answer_one_dm(env, port, tmp_path, fake_slack, f"Which loop is this, {choice}?")
    assert f"Slack adapter running (http mode, port {port}, {runs_on} loop)" in stderr


def broken_uvloop(tmp_path: Path) -> str:
    """A ``uvloop`` that is there but cannot be imported (not built for this platform), first on the path."""
    shadow = tmp_path / "shadow" / "uvloop"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("no uvloop build for this platform")\n')
    return str(shadow.parent)


async def test_auto_without_uvloop_runs_on_asyncio(
    tmp_path: Path, redis_url: str, prefix: str, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    env, port = slack_env(tmp_path, redis_url, prefix, fake_slack, fake_openai, loop="auto",
                          path=broken_uvloop(tmp_path))
    _, stderr = await answer_one_dm(env, port, tmp_path, fake_slack, "Still there without uvloop?")
    assert f"Slack adapter running (http mode, port {port}, asyncio loop)" in stderr


async def test_requiring_a_uvloop_that_cannot_be_imported_is_one_line(
    tmp_path: Path, redis_url: str, prefix: str, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    env, _ = slack_env(tmp_path, redis_url, prefix, fake_slack, fake_openai, loop="uvloop",
                       path=broken_uvloop(tmp_path))
    env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there: said before Redis is tried
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "slack", cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert err.decode().splitlines() == [
        "configuration error: EVENT_LOOP: uvloop cannot be imported here (no uvloop build for this platform); "
        "install it (pip install uvloop) or set EVENT_LOOP=asyncio"]


async def test_socket_mode_answers_and_stops_on_uvloop(
    tmp_path: Path, redis_url: str, prefix: str, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    env, _ = slack_env(tmp_path, redis_url, prefix, fake_slack, fake_openai, loop="uvloop")
    env["SLACK_APP_TOKEN"] = "xapp-1-test"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "slack", cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    event = dm_event("Over the socket, on uvloop?")
    try:
        async def connected() -> bool | None:
            return True if fake_slack.open_sockets == 1 else None

        await until_served(connected, proc)  # it imports and connects first; a start that fails ends the wait
        await fake_slack.push_event(event_envelope(event))

        def answered() -> bool:
            found = fake_slack.in_thread(event["channel"], event["ts"])
            return bool(found) and not any(m.streaming for m in found)

        await fake_slack.wait_for(answered)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert "(socket mode" in err.decode() and "uvloop loop)" in err.decode()
        await fake_slack.wait_for(lambda: fake_slack.open_sockets == 0)  # the socket closed on the way out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
