"""``python -m bot console`` as a person meets it: in a terminal, typing, editing, pasting, leaving.

Each test runs the real command in a pseudo-terminal (pexpect) against the loopback fake OpenAI,
sends the bytes a terminal sends for each key (an arrow is ``ESC [ D``, a paste is wrapped in the
bracketed-paste markers prompt_toolkit asks the terminal for), and reads what the model was sent and
what the screen received.

pexpect is no terminal emulator: it cannot answer "where is the cursor?" (CPR) as a terminal does, so
``PROMPT_TOOLKIT_NO_CPR`` tells prompt_toolkit not to ask rather than wait for an answer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
PROMPT_READY = r"\x1b\[\?2004h"
"""prompt_toolkit turns bracketed paste on as each prompt starts: from then on, keys reach the editor."""
LEFT, UP, CTRL_C, CTRL_D = "\x1b[D", "\x1b[A", "\x03", "\x04"
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"


def environment(fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "DISCORD_", "REDIS_"))}
    return {**clean, "OPENAI_API_KEY": "test", "OPENAI_BASE_URL": fake.base_url, "OPENAI_MODEL": "gpt-test",
            "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm-256color", **extra}


class Terminal:
    """The console in a 24x100 pseudo-terminal; ``transcript`` is everything it printed so far."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.child = pexpect.spawn(sys.executable, ["-m", "bot", "console", *args], env=env, cwd=str(ROOT),
                                   encoding="utf-8", codec_errors="replace", timeout=30, dimensions=(24, 100))
        self.transcript = ""

    async def expect(self, pattern: Any) -> str:
        """Wait (off the event loop, where the fake OpenAI runs) until the output matches ``pattern``."""
        await asyncio.to_thread(self.child.expect, pattern)
        before = self.child.before if isinstance(self.child.before, str) else ""
        after = self.child.after if isinstance(self.child.after, str) else ""
        self.transcript += before + after
        return after

    async def prompt(self) -> None:
        await self.expect(PROMPT_READY)

    async def send(self, keys: str) -> None:
        await asyncio.to_thread(self.child.send, keys)

    async def paste(self, text: str) -> None:
        await self.send(PASTE_START + text + PASTE_END)

    async def exit_code(self) -> int:
        await self.expect(pexpect.EOF)
        self.child.close()
        assert self.child.signalstatus is None, f"killed by signal {self.child.signalstatus}"
        return int(self.child.exitstatus)

    def kill(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def terminals() -> Any:
    opened: list[Terminal] = []

    def open_terminal(env: dict[str, str], *args: str) -> Terminal:
        opened.append(Terminal(env, *args))
        return opened[-1]

    yield open_terminal
    for terminal in opened:
        terminal.kill()


def turns(fake: FakeOpenAI) -> list[Any]:
    """What the model was sent, turn by turn."""
    return [r.json["input"] for r in fake.requests if r.path == "/v1/responses" and r.json]


async def test_type_edit_recall_and_leave_with_ctrl_d(fake_openai: FakeOpenAI, terminals: Any) -> None:
    term = terminals(environment(fake_openai))
    await term.prompt()
    await term.send("helo" + LEFT + "l\r")  # a typo, mended with the left arrow
    await term.expect("echo: hello")
    await term.prompt()
    await term.send(UP + "\r")  # the same line again, from the history
    await term.expect("echo: hello")
    await term.prompt()
    await term.send(UP + UP + " again\r")
    await term.expect("echo: hello again")
    await term.prompt()
    await term.send(CTRL_D)
    assert await term.exit_code() == 0
    assert turns(fake_openai) == ["hello", "hello", "hello again"]
    assert "[D" not in "".join(turns(fake_openai))
    assert " INFO " not in term.transcript and "Traceback" not in term.transcript
    # The embedded store dies with the process: what it alone knew of is deleted at exit.
    [conversation] = fake_openai.conversations.values()
    assert conversation.deleted


async def test_a_long_multi_line_paste_is_one_message(fake_openai: FakeOpenAI, terminals: Any) -> None:
    words = "the quick brown fox jumps over the lazy dog and reads the whole log twice " * 3
    pasted = "\n".join(f"{n:03d} {words}"[:199] for n in range(100)) + "."
    assert len(pasted) == 20_000 and pasted.count("\n") == 99
    term = terminals(environment(fake_openai, MAX_INPUT_CHARS="20000"))
    await term.prompt()
    await term.paste(pasted)
    await term.send("\r")
    await term.expect(r"099 the quick[^\r\n]*\.\r\n")  # the echo's last line: the answer came through whole
    await term.prompt()
    assert turns(fake_openai) == [pasted]
    await term.send(CTRL_D)
    assert await term.exit_code() == 0


async def test_a_paste_over_the_limit_is_refused_in_one_sentence(fake_openai: FakeOpenAI, terminals: Any) -> None:
    term = terminals(environment(fake_openai))  # MAX_INPUT_CHARS: 8,000 by default
    await term.prompt()
    await term.paste(("x" * 99 + "\n") * 199 + "x" * 100)
    await term.send("\r")
    await term.expect("That message is too long \\(20,000 characters\\); the limit is 8,000. Please shorten it.")
    await term.prompt()
    assert turns(fake_openai) == []
    await term.send("short\r")
    await term.expect("echo: short")
    await term.prompt()
    await term.send(CTRL_D)
    assert await term.exit_code() == 0


async def test_ctrl_c_at_the_prompt_leaves_cleanly(fake_openai: FakeOpenAI, terminals: Any) -> None:
    term = terminals(environment(fake_openai))
    await term.prompt()
    await term.send("hi\r")
    await term.expect("echo: hi")
    await term.prompt()
    await term.send("half a thought")
    await term.send(CTRL_C)
    assert await term.exit_code() == 0
    assert "Traceback" not in term.transcript and "KeyboardInterrupt" not in term.transcript
    assert turns(fake_openai) == ["hi"]
    assert term.transcript.rstrip().endswith("\x1b[?2004l")  # the terminal is given back: bracketed paste off


async def test_answers_stream_and_ctrl_c_during_one_leaves_cleanly(fake_openai: FakeOpenAI, terminals: Any) -> None:
    term = terminals(environment(fake_openai, SHUTDOWN_GRACE="1s"))
    await term.prompt()
    # The fake sends "echo: streaming one two" in three pieces and holds each one after the first for a
    # minute: only an answer printed as it streams shows its first piece now.
    fake_openai.stream_delay = 60
    await term.send("streaming one two\r")
    await term.expect("echo: st")
    await term.send(CTRL_C)  # no prompt now: the terminal turns it into SIGINT
    assert await term.exit_code() == 0  # after SHUTDOWN_GRACE, the held answer is given up
    assert "reaming" not in term.transcript.split("echo: st", 1)[1]
    assert "Traceback" not in term.transcript


async def test_sigterm_at_the_prompt_leaves_cleanly(fake_openai: FakeOpenAI, terminals: Any) -> None:
    term = terminals(environment(fake_openai))
    await term.prompt()
    term.child.kill(signal.SIGTERM)
    assert await term.exit_code() == 0
    assert "Traceback" not in term.transcript


@pytest.mark.parametrize("stdin", ["devnull", "empty file"])
async def test_no_input_at_all_exits_at_once(fake_openai: FakeOpenAI, tmp_path: Path, stdin: str) -> None:
    """``python -m bot console </dev/null``: the end of input comes first, and the console just ends."""
    source = Path(os.devnull) if stdin == "devnull" else tmp_path / "empty.txt"
    source.touch()
    with source.open("rb") as handle:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "console", stdin=handle, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=environment(fake_openai), cwd=ROOT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert out == b""
    assert b"Traceback" not in err and b"Error" not in err
