"""Helpers shared by tests (base_env, run_console)."""

from __future__ import annotations

import asyncio
import os
import sys

from tests.fakes.openai_server import FakeOpenAI
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT


async def run_console(env: dict[str, str], stdin: str, *args: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "DISCORD_", "REDIS_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "console",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean, **env},
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    return proc.returncode or 0, out.decode(), err.decode()

def base_env(fake: FakeOpenAI) -> dict[str, str]:
    return {"OPENAI_API_KEY": "test", "OPENAI_BASE_URL": fake.base_url, "OPENAI_MODEL": "gpt-test"}
