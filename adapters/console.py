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

from bot.runtime import Runtime
from bot.service import stop_on_signals
from bot.types import Incoming, ThreadKey, user_sentence

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
            if text == "/forget":
                result = await core.forget(key)
            else:
                result = await core.forget_user(key.platform, key.workspace, key.user)
            noun = "conversation" if result.threads == 1 else "conversations"
            reply = f"Forgot {result.threads} {noun}." if result.threads else "There was nothing to forget."
        else:

            async def on_delta(delta: str) -> None:
                out.write(delta)
                out.flush()

            answer = await core.handle(
                Incoming(key, text, message_id=f"console-{uuid.uuid4().hex}"), on_delta if stream else None
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
    if interactive:
        print(HELP, file=sys.stderr)
    stop = asyncio.Event()
    reader = await _Lines.open()
    stopping = asyncio.create_task(stop.wait())
    with stop_on_signals(stop):
        while not stop.is_set():
            if interactive:
                sys.stderr.write("> ")
                sys.stderr.flush()
            reading = asyncio.create_task(reader.readline())
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                reading.cancel()
                break
            raw = reading.result()
            if not raw:
                break
            await answer_line(runtime, key, raw.decode("utf-8", errors="replace"), sys.stdout, stream)
    stopping.cancel()
    await runtime.core.drain(runtime.settings.shutdown_grace)
