"""The console without a terminal: stdin read line by line, one reply per input line.

A pipe or a socket is read through the event loop. Anything the loop cannot watch (a regular file,
``/dev/null``, a terminal when stdout is not one) is read by a daemon thread per line, so that a stop
never waits for a line that may never come.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
import threading
from collections.abc import Awaitable, Callable


class Lines:
    """Lines of stdin, as bytes, without blocking the loop; ``b""`` at the end."""

    def __init__(self, reader: asyncio.StreamReader | None) -> None:
        self._reader = reader

    @classmethod
    async def open(cls) -> Lines:
        mode = os.fstat(sys.stdin.fileno()).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return cls(None)  # epoll refuses regular files and /dev/null
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        return cls(reader)

    async def readline(self) -> bytes:
        if self._reader is not None:
            return await self._reader.readline()
        return await _in_daemon_thread(sys.stdin.buffer.readline)


async def _in_daemon_thread(read: Callable[[], bytes]) -> bytes:
    """``read()`` in a thread the interpreter does not wait for at exit (unlike ``asyncio.to_thread``)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()

    def settle(line: bytes | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(line or b"")

    def work() -> None:
        line: bytes | None = None
        error: BaseException | None = None
        try:
            line = read()
        except Exception as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed while we read: nobody is waiting
            loop.call_soon_threadsafe(settle, line, error)

    threading.Thread(target=work, name="console-stdin", daemon=True).start()
    return await done


async def read_lines(ask: Callable[[str], Awaitable[None]], *, prompt: bool) -> None:
    """Hand each line of stdin to ``ask`` until the end of input; ``prompt``: show ``> `` on stderr."""
    reader = await Lines.open()
    while True:
        if prompt:
            sys.stderr.write("> ")
            sys.stderr.flush()
        raw = await reader.readline()
        if not raw:
            return
        await ask(raw.decode("utf-8", errors="replace"))
