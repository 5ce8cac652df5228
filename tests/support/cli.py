"""Helpers shared by tests (bot, stderr_lines)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT


def bot(
    *args: str, cwd: Path, env: dict[str, str] | None = None, dotenv: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m bot ARGS`` in ``cwd``, with only PATH, HOME, PYTHONPATH and ``env``; ``dotenv`` goes to cwd/.env."""
    if dotenv is not None:
        (cwd / ".env").write_text(dotenv, encoding="utf-8")
    environ = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(cwd), "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd,
        timeout=60,
    )

def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stderr.strip().splitlines()
