"""The measured process of a front door: the real ``python -m bot`` (or the baseline), and what it costs.

Started as ``python -m bench.bot_proc`` (see there) with the settings in its environment only (its
working directory is an empty temporary one, so no ``.env`` is read), pointed at the fakes' process
and the bench's Redis. Its CPU time and peak RSS are read from ``/proc/<pid>`` (Linux): nothing of
the fakes, the load driver or the bench itself is in them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.front_driver import SECRET

ROOT = Path(__file__).resolve().parent.parent
DOORS = ("slack_http", "slack_socket", "discord", "baseline", "floor")
"""Slack HTTP mode, Slack Socket Mode, Discord, the plain synchronous Bolt app (HTTP), and the floor: the least
wire work on Slack HTTP (:mod:`bench.front_floor`)."""
REFERENCES = ("baseline", "floor")
"""Doors that are not the bot: no profile, no streams level, no start-up warnings to read."""
BOT_TOKEN = "xoxb-bench-front-door"
APP_TOKEN = "xapp-1-bench-front-door"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def door_env(door: str, urls: dict[str, Any], *, redis_url: str, prefix: str, port: int,
             agent_view: bool = False, event_loop: str = "auto") -> dict[str, str]:
    """The process's whole environment: the settings of ``door`` and nothing of the caller's but PATH.
    ``agent_view``: ``SLACK_AGENT_VIEW`` left at its default (on), for the DMs of the streams level.
    ``event_loop``: ``EVENT_LOOP`` (the baseline, a synchronous app, has none)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": str(urls["openai"]),
        "OPENAI_MODEL": "gpt-test",
        "LOG_LEVEL": "WARNING",
        "PORT": str(port),
        "EVENT_LOOP": event_loop,
    }
    if door == "discord":
        env |= {"DISCORD_TOKEN": str(urls["discord_token"]), "DISCORD_API_BASE": str(urls["discord_api"])}
    else:
        env |= {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": str(urls["slack_api"])}
        # The front door's traffic is a user mentioning the bot at the top of a channel of their own, again and
        # again: one conversation per user and channel, as before the shared-thread default (issue 15), so the
        # numbers stay comparable. Thread reading and speakers' names are measured by tests/test_slack_threads.py.
        env["THREAD_SCOPE"] = "user"
        # Top-level DM replies and no loading status (the agent experience's two setStatus calls per channel
        # answer): the same Slack calls as the first rounds' figures and as the baseline's.
        if not agent_view:
            env["SLACK_AGENT_VIEW"] = "off"
        if door == "slack_socket":
            env["SLACK_APP_TOKEN"] = APP_TOKEN
    return env


class BotProcess:
    """One measured process: start, readiness, CPU and memory readings, profiler signals, stop."""

    def __init__(self, door: str, env: dict[str, str], *, profile_out: Path | None = None) -> None:
        self.door = door
        self.env = dict(env)
        self.port = int(env["PORT"])
        self.profile_out = profile_out
        if profile_out is not None:
            self.env["BENCH_PROFILE_OUT"] = str(profile_out)
        self._dir = tempfile.TemporaryDirectory(prefix="tk-front-")
        self._stderr = Path(self._dir.name) / "stderr.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_s = 0.0
        """Seconds from launch until ready."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def start(self) -> None:
        args = [self.door] if self.door in REFERENCES else ["bot", "discord" if self.door == "discord" else "slack"]
        launched = time.monotonic()
        with open(self._stderr, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "bench.bot_proc", *args], cwd=self._dir.name,
                                         env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err)
        if self.door != "discord":
            self._wait_healthy(60.0)
        self.started_s = time.monotonic() - launched

    def _wait_healthy(self, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.door}: not healthy within {within:.0f} s; stderr: {self.stderr()[-2000:]}")

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.door}: the process exited with {self.proc.returncode}: {self.stderr()[-2000:]}")

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("not started")
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_kib(self) -> dict[str, int]:
        """``VmRSS`` (now) and ``VmHWM`` (peak resident set since start), KiB."""
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0])
        return out

    def profile(self, on: bool) -> None:
        """Start (SIGUSR1) or stop and write (SIGUSR2) the profiler; waits for the file when stopping."""
        if self.profile_out is None:
            return
        if on:
            self.profile_out.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR1 if on else signal.SIGUSR2)
        if not on:
            deadline = time.monotonic() + 30
            while not self.profile_out.exists():
                self._check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.door}: no profile written within 30 s")
                time.sleep(0.05)

    def stderr(self) -> str:
        try:
            return self._stderr.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, within: float = 30.0) -> int | None:
        """SIGTERM (the bot drains and exits 0), then SIGKILL if it is still there after ``within``."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(within)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()
