"""Console adapter: chat through the same core from a terminal or a pipe.

In a terminal (stdin and stdout both are one) it is a line editor (:mod:`adapters.console.terminal`):
arrows edit and recall lines, a multi-line paste is one message, answers stream as they come, only
warnings and errors are logged, and Ctrl-D or Ctrl-C leaves. Anything else (a pipe, a file,
``/dev/null``) is read line by line (:mod:`adapters.console.lines`), one reply per input line on
stdout and logs on stderr, so ``printf 'hi\\n' | python -m bot console`` works in scripts.

Without ``REDIS_URL`` the store lives in this process only, so the conversation the console made is
forgotten, on the provider's side too, when it exits: nothing could ever find it again.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys
import uuid
from typing import TextIO

from adapters.console.lines import read_lines
from adapters.console.terminal import chat
from adapters.kit.tasks import InFlight, run_until_stopped
from adapters.kit.texts import CONSOLE_FORGET, forget_text, user_sentence
from bot.domain import Incoming, ThreadKey
from bot.logs import quiet_for_terminal
from bot.runtime import Runtime

log = logging.getLogger("threadkeeper.console")

HELP = "Type a message and press Enter. /forget forgets this conversation, /forget all every one of yours."
TERMINAL_HELP = "Up and Down recall earlier lines, Esc then Enter starts a new line, Ctrl-D leaves."
FORGOTTEN_AT_EXIT = "Without REDIS_URL this conversation is forgotten when you leave."


async def answer_line(runtime: Runtime, key: ThreadKey, line: str, out: TextIO, stream: bool) -> None:
    """Handle one input line and write exactly one reply (nothing for a blank line)."""
    core = runtime.core
    text = line.strip()
    if not text:
        return
    try:
        if text in ("/forget", "/forget all"):
            everything = text == "/forget all"
            if everything:
                result = await core.forget_user(key.platform, key.workspace, key.user)
            else:
                result = await core.forget(key)
            reply = forget_text(CONSOLE_FORGET, result, everything=everything)
        else:

            async def on_delta(delta: str) -> None:
                out.write(delta)
                out.flush()

            answer = await core.handle(
                Incoming(key, text, message_id=f"console-{uuid.uuid4().hex}", is_dm=True), on_delta if stream else None
            )
            if answer is None:
                return
            reply = "" if stream else answer.text
    except Exception as exc:
        reply = user_sentence(exc, log, "console message")
    out.write(reply + "\n")
    out.flush()


async def run(runtime: Runtime, *, user: str | None = None, channel: str = "console") -> None:
    """Answer until the end of input, Ctrl-C or SIGTERM/SIGINT; an answer in progress still finishes."""
    key = ThreadKey("console", "local", channel, user or getpass.getuser())
    terminal = sys.stdin.isatty() and sys.stdout.isatty()
    embedded = runtime.settings.redis_url is None
    answering = InFlight(log)
    asked = False

    async def ask(line: str) -> None:
        nonlocal asked
        asked = asked or bool(line.strip())
        # Shielded: a stop cancels the reading, never the answer (the drain waits for it).
        await asyncio.shield(answering.spawn(answer_line(runtime, key, line, sys.stdout, sys.stdout.isatty())))

    async def read_and_answer() -> None:
        if not terminal:
            if sys.stdin.isatty():
                print(HELP, file=sys.stderr)
            await read_lines(ask, prompt=sys.stdin.isatty())
            return
        quiet_for_terminal()
        print(" ".join([HELP, TERMINAL_HELP, FORGOTTEN_AT_EXIT if embedded else ""]).strip(), file=sys.stderr)
        await chat(ask)

    async def drain() -> None:
        grace = runtime.settings.shutdown_grace
        await runtime.core.drain(grace)
        await answering.wait(grace)

    async def nothing() -> None:
        """The console has no connection to open."""

    async def leave() -> None:
        if embedded and asked:
            await _forget_at_exit(runtime, key)

    await run_until_stopped(nothing, drain, leave, until=read_and_answer)


async def _forget_at_exit(runtime: Runtime, key: ThreadKey) -> None:
    """The embedded store goes with this process: delete the conversation it alone knew of."""
    try:
        async with asyncio.timeout(runtime.settings.shutdown_grace):
            await runtime.core.forget(key)
    except Exception as exc:
        log.warning("could not forget the console's conversation at exit: %s", exc or type(exc).__name__)
