"""A loopback TCP proxy in front of a real Redis that freezes after N commands: a process stopped mid-step.

It reads the client's RESP commands (pipelines too) and forwards them one by one; once ``limit``
commands went through, it forwards nothing more, so the client's next Redis call hangs until it is
cancelled, exactly as if the process had been frozen or killed between two of its Redis writes.
:meth:`FreezingRedisProxy.thaw` lets it go on; :meth:`FreezingRedisProxy.cut` is Redis going down instead: every
command fails at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit


def _command_end(buffer: bytes) -> int:
    """Length of the first complete RESP command in ``buffer``; 0 when incomplete."""
    if not buffer:
        return 0
    if not buffer.startswith(b"*"):
        raise ValueError(f"only RESP arrays are expected from redis-py: {buffer[:40]!r}")
    line_end = buffer.find(b"\r\n")
    if line_end < 0:
        return 0
    pos = line_end + 2
    for _ in range(int(buffer[1:line_end])):
        size_end = buffer.find(b"\r\n", pos)
        if size_end < 0:
            return 0
        pos = size_end + 2 + int(buffer[pos + 1 : size_end]) + 2
        if pos > len(buffer):
            return 0
    return pos


class FreezingRedisProxy:
    def __init__(self, redis_url: str, limit: int) -> None:
        parts = urlsplit(redis_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._parts = parts
        self.limit = limit
        self.forwarded = 0
        self.frozen = asyncio.Event()
        self._thawed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return urlunsplit((self._parts.scheme, f"127.0.0.1:{port}", self._parts.path, "", ""))

    async def __aenter__(self) -> FreezingRedisProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def thaw(self) -> None:
        """The frozen process goes on: what it sent meanwhile is forwarded, and nothing is held any more."""
        self.limit = 10**12
        self._thawed.set()

    def cut(self) -> None:
        """Redis goes away (down, not frozen): open connections close and new ones are refused at once."""
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        back = asyncio.create_task(self._pipe_back(up_reader, writer))
        self._tasks.update({back, asyncio.current_task()})  # type: ignore[arg-type]
        self._writers.update({writer, up_writer})
        buffer = b""
        try:
            while chunk := await reader.read(65536):
                buffer += chunk
                while end := _command_end(buffer):
                    if self.forwarded >= self.limit:
                        self.frozen.set()
                        await up_writer.drain()
                        await self._thawed.wait()
                        continue
                    up_writer.write(buffer[:end])
                    buffer = buffer[end:]
                    self.forwarded += 1
                await up_writer.drain()
        finally:
            back.cancel()
            with contextlib.suppress(Exception):
                up_writer.close()
                writer.close()

    @staticmethod
    async def _pipe_back(up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await up_reader.read(65536):
            writer.write(chunk)
            await writer.drain()
