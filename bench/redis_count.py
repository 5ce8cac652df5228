"""Client-side Redis round-trip counting.

One round trip = one ``execute_command`` (a plain command, ``EVALSHA``, and the
``SCRIPT LOAD`` + retry after a ``NOSCRIPT``) or one pipeline ``execute`` (however
many commands it carries). The wrappers are installed on the client *instance*,
so the code under test runs unchanged; connection set-up (``HELLO``,
``CLIENT SETINFO``) is not a round trip of any message and is not counted.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import redis
from redis.asyncio import Redis as AsyncRedis


class RoundTrips:
    """A thread-safe tally of round trips, by command name (``PIPELINE[n]`` for pipelines)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_command: Counter[str] = Counter()

    def add(self, name: str) -> None:
        with self._lock:
            self.by_command[name] += 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.by_command.values())

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.by_command)

    def reset(self) -> None:
        with self._lock:
            self.by_command.clear()


def _name(args: tuple[Any, ...]) -> str:
    first = args[0] if args else "?"
    return (first.decode() if isinstance(first, bytes) else str(first)).upper()


def count_async(client: AsyncRedis, tally: RoundTrips) -> AsyncRedis:
    """Instrument a ``redis.asyncio.Redis`` in place; returns it."""
    execute: Callable[..., Awaitable[Any]] = client.execute_command
    make_pipeline = client.pipeline

    async def execute_command(*args: Any, **options: Any) -> Any:
        tally.add(_name(args))
        return await execute(*args, **options)

    def pipeline(transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = make_pipeline(transaction=transaction, shard_hint=shard_hint)
        run: Callable[..., Awaitable[list[Any]]] = pipe.execute

        async def execute_pipe(raise_on_error: bool = True) -> list[Any]:
            size = len(pipe.command_stack)
            if size:
                tally.add(f"{'MULTI' if transaction else 'PIPELINE'}[{size}]")
            return await run(raise_on_error=raise_on_error)

        pipe.execute = execute_pipe  # type: ignore[method-assign]
        return pipe

    client.execute_command = execute_command  # type: ignore[method-assign]
    client.pipeline = pipeline  # type: ignore[method-assign]
    return client


def count_sync(client: redis.Redis, tally: RoundTrips) -> redis.Redis:
    """Instrument a synchronous ``redis.Redis`` in place (the baselines' client); returns it."""
    execute: Callable[..., Any] = client.execute_command

    def execute_command(*args: Any, **options: Any) -> Any:
        tally.add(_name(args))
        return execute(*args, **options)

    client.execute_command = execute_command  # type: ignore[method-assign]
    return client
