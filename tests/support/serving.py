"""Waiting for a bot to serve: poll it until a request gets through, while its process is still running."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

T = TypeVar("T")


async def until_served(attempt: Callable[[], Awaitable[T | None]], proc: asyncio.subprocess.Process | None = None,
                       *, tries: int = 600, pause: float = 0.05, never: str = "the bot never served") -> T:
    """``await attempt()`` until it gets through (no connection error) and gives something other than None.

    With ``proc``, each try first checks that the process (``python -m bot ...``) has not exited.
    """
    for _ in range(tries):
        if proc is not None:
            assert proc.returncode is None, "the bot exited before serving"
        try:
            result = await attempt()
        except aiohttp.ClientError:
            result = None
        if result is not None:
            return result
        await asyncio.sleep(pause)
    raise AssertionError(never)


async def post_when_served(url: str, body: str, headers: dict[str, str],
                           proc: asyncio.subprocess.Process) -> None:
    """POST ``body`` to a bot still starting (it imports and connects first) until it answers 200."""
    async with aiohttp.ClientSession() as http:

        async def deliver() -> bool:
            async with http.post(url, data=body.encode(), headers=headers) as resp:
                assert resp.status == 200
                return True

        await until_served(deliver, proc)


async def healthy(http: aiohttp.ClientSession, url: str) -> bool | None:
    """True once ``url`` (a ``/healthz``) answers 200; None while it does not."""
    async with http.get(url) as response:
        return True if response.status == 200 else None
