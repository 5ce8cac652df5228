"""Console adapter: chat through the same core from a terminal or a pipe.

Reads stdin line by line; writes one reply per input line to stdout and logs
to stderr, so ``printf 'hi\\n' | python -m bot console`` works in scripts.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import stat
import sys
import uuid
from typing import TextIO

from adapters.kit.tasks import InFlight, run_until_stopped
from adapters.kit.texts import CONSOLE_FORGET, forget_text, user_sentence
from bot.domain import Incoming, ThreadKey
from bot.runtime import Runtime

log = logging.getLogger("threadkeeper.console")

HELP = "Type a message and press Enter. /forget forgets this conversation, /forget all every one of yours."


class _Lines:
    """Lines of stdin without blocking the loop: a pipe or terminal through the loop's reader,
    anything else (a regular file) through a worker thread."""

    def __init__(self, reader: asyncio.StreamReader | None) -> None:
        self._reader = reader

    @classmethod
    async def open(cls) -> _Lines:
        mode = os.fstat(sys.stdin.fileno()).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)):
            return cls(None)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        return cls(reader)

    async def readline(self) -> bytes:
        if self._reader is not None:
            return await self._reader.readline()
        return await asyncio.to_thread(sys.stdin.buffer.readline)


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
    """Answer stdin line by line until EOF or SIGTERM/SIGINT; an answer in progress still finishes."""
    key = ThreadKey("console", "local", channel, user or getpass.getuser())
    interactive = sys.stdin.isatty()
    stream = sys.stdout.isatty()
    answering = InFlight(log)

    async def read_and_answer() -> None:
        if interactive:
            print(HELP, file=sys.stderr)
        reader = await _Lines.open()
        while True:
            if interactive:
                sys.stderr.write("> ")
                sys.stderr.flush()
            raw = await reader.readline()
            if not raw:
                return
            line = raw.decode("utf-8", errors="replace")
            # Shielded: a stop cancels the reading, never the answer (the drain waits for it).
            await asyncio.shield(answering.spawn(answer_line(runtime, key, line, sys.stdout, stream)))

    async def drain() -> None:
        grace = runtime.settings.shutdown_grace
        await runtime.core.drain(grace)
        await answering.wait(grace)

    async def nothing() -> None:
        """The console has no connection to open or close."""

    await run_until_stopped(nothing, drain, nothing, until=read_and_answer)
