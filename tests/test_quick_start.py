"""The README's quick start, run as written: its shell blocks, verbatim, in a fresh copy of the repository.

A newcomer pastes the "Try it" block into a terminal, types a message and leaves; then pastes the
"Run the tests" block. So does this test: each block runs unchanged under ``sh -e`` in a copy of the
checkout's files (no ``.venv``, no ``.git``), the first one in a pseudo-terminal, and creates its
own ``.venv`` with the ``python3`` the project's venv was built from.

What cannot be as written is the network, and this is how the test does without it:

* pip finds the locked packages already installed rather than downloading them: ``PYTHONPATH``
  holds the project venv's site-packages (where ``.ci/run`` installed the same lock), so
  ``pip install --require-hashes -r requirements*.txt`` still reads every pin and hash of the lock and
  finds each one satisfied, and ``PIP_NO_INDEX`` makes any download an error instead;
* the editable install of the bot builds without an isolated build environment
  (``PIP_NO_BUILD_ISOLATION``), with the setuptools of the dev lock, and goes into the new ``.venv``;
* the machine's pip configuration is ignored (``PIP_CONFIG_FILE``), so no local mirror helps;
* ``OPENAI_BASE_URL`` points at the loopback fake OpenAI, which knows the default model;
* ``PYTEST_ADDOPTS`` narrows ``python -m pytest`` to a few fast tests: the whole suite inside the suite
  would be a second CI run.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import AsyncIterator
from pathlib import Path

import pexpect
import pytest

from bot.config import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
README = ROOT / "README.md"
PROMPT_READY = r"\x1b\[\?2004h"
INSTALL_WITHIN = 300.0
"""Seconds for a block's venv and installs on a busy two-core machine."""


def quick_start_blocks() -> tuple[str, str]:
    """The ``sh`` blocks of the README's "Try it" section: (try the console, run the tests)."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Try it\n(.*?)^## ", text, flags=re.M | re.S)
    assert section, "the README has no '## Try it' section"
    blocks = re.findall(r"^```sh\n(.*?)^```", section[1], flags=re.M | re.S)
    [console] = [b for b in blocks if "python -m bot console" in b]
    [tests] = [b for b in blocks if "python -m pytest" in b]
    return console, tests


def test_the_quick_start_makes_and_activates_a_virtual_environment_first() -> None:
    for block in quick_start_blocks():
        commands = [c.strip() for line in block.splitlines() for c in line.split("&&") if c.strip()]
        assert commands[:2] == ["python3 -m venv .venv", ". .venv/bin/activate"], block
        installs = [c for c in commands if c.startswith("pip install")]
        assert installs and all("--require-hashes -r requirements" in c or "--no-deps" in c for c in installs)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's files as a clone has them; ``bin/python3`` beside it for the PATH."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    copy = tmp_path_factory.mktemp("quick-start") / "threadkeeper"
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    (copy.parent / "bin").mkdir()
    (copy.parent / "bin" / "python3").symlink_to(Path(getattr(sys, "_base_executable", sys.executable)).resolve())
    return copy


def environment(copy: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.pathsep.join([str(copy.parent / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(copy),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "PYTHONPATH": sysconfig.get_paths()["purelib"],
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PROMPT_TOOLKIT_NO_CPR": "1",  # pexpect cannot answer a terminal's cursor position request
        **extra,
    }


@pytest.fixture
async def fake_default_model() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(models=[Settings.model_fields["openai_model"].default]) as fake:
        yield fake


async def test_try_it_gives_a_console_that_answers(checkout: Path, fake_default_model: FakeOpenAI) -> None:
    console, _ = quick_start_blocks()
    env = environment(checkout, OPENAI_BASE_URL=fake_default_model.base_url)
    child = pexpect.spawn("sh", ["-ec", console], cwd=str(checkout), env=env, encoding="utf-8",
                          codec_errors="replace", timeout=INSTALL_WITHIN, dimensions=(24, 100))
    try:
        await asyncio.to_thread(child.expect, PROMPT_READY)
        installed = child.before
        child.send("hello from the README\r")
        await asyncio.to_thread(child.expect, "echo: hello from the README")
        await asyncio.to_thread(child.expect, PROMPT_READY)
        child.send("\x04")
        await asyncio.to_thread(child.expect, pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before
    assert (checkout / ".venv" / "bin" / "python").exists()
    assert "Successfully installed threadkeeper" in installed
    assert "Downloading" not in installed


def test_run_the_tests_runs_them(checkout: Path) -> None:
    _, tests = quick_start_blocks()
    env = environment(checkout, PYTEST_ADDOPTS="-p no:cacheprovider tests/test_text_input.py -k 'not console'")
    done = subprocess.run(["sh", "-ec", tests], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=INSTALL_WITHIN, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert re.search(r"\b\d+ passed\b", done.stdout), done.stdout[-2000:]
    assert "Successfully installed threadkeeper" in done.stdout
