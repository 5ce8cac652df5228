"""The loopback fake OpenAI (``tests.fakes.openai_server``) in a process of its own.

Why a process and not :class:`~tests.fakes.openai_server.FakeOpenAIThread`: a thread
shares the bench's GIL, so at 1,000 concurrent requests the fake's own CPU time
(aiohttp parsing, JSON building) would be charged to the core as "overhead" and
could become the bottleneck. In its own process it has its own GIL and core.

The bench talks to it over a :func:`multiprocessing.Pipe` with a few commands:
count calls, list calls, reset, delete a conversation, change latencies.

Latency is split in two, because the article's lazy check pays for a
``retrieve`` that takes "roughly 150-300 ms", not a model's full answer time:
``turn_latency`` is slept by turns (``POST /v1/responses``, ``/v1/chat/completions``),
``meta_latency`` by every other call (create, retrieve, delete).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.fakes.openai_server import FakeOpenAI

TURN_PATHS = ("/v1/responses", "/v1/chat/completions")


class BenchFake(FakeOpenAI):
    """The fake with separate latencies for turns and for metadata calls."""

    def __init__(self, *, turn_latency: float, meta_latency: float, context_limit: int | None) -> None:
        super().__init__(latency=0.0, context_limit=context_limit)
        self.turn_latency = turn_latency
        self.meta_latency = meta_latency
        self.turns_arrived = 0
        """Turns received, counted on arrival (``calls`` records a call after its latency)."""

    @web.middleware
    async def _pipeline(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        turn = request.method == "POST" and request.path in TURN_PATHS
        self.turns_arrived += turn
        delay = self.turn_latency if turn else self.meta_latency
        if delay > 0:
            await asyncio.sleep(delay)
        return await super()._pipeline(request, handler)


def _command(fake: BenchFake, cmd: tuple[Any, ...]) -> Any:
    name = cmd[0]
    if name == "count":
        return fake.count(cmd[1], cmd[2])
    if name == "calls":
        return list(fake.calls)
    if name == "reset":
        fake.reset_calls()
        fake.turns_arrived = 0
        return None
    if name == "arrived":
        return fake.turns_arrived
    if name == "delete":
        fake.delete_conversation(cmd[1])
        return None
    if name == "set":
        setattr(fake, cmd[1], cmd[2])
        return None
    if name == "truncations":
        return len(fake.truncations)
    raise ValueError(f"unknown command {name!r}")


def _serve(conn: Connection, turn_latency: float, meta_latency: float, context_limit: int | None) -> None:
    """Child process: run the fake on this process's loop, answer commands from the pipe."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    fake = BenchFake(turn_latency=turn_latency, meta_latency=meta_latency, context_limit=context_limit)
    conn.send(loop.run_until_complete(fake.start()))
    done = asyncio.Event()

    def on_command() -> None:
        try:
            cmd = conn.recv()
        except EOFError:
            done.set()
            return
        if cmd[0] == "stop":
            done.set()
            return
        try:
            conn.send(("ok", _command(fake, cmd)))
        except Exception as exc:
            conn.send(("error", repr(exc)))

    loop.add_reader(conn.fileno(), on_command)
    loop.run_until_complete(done.wait())
    loop.remove_reader(conn.fileno())
    loop.run_until_complete(fake.stop())
    loop.close()
    conn.close()


class ChildProcess:
    """A bench helper in a spawned process, driven over a pipe: ``(status, value)`` for each command.
    Blocking calls: from async code use ``asyncio.to_thread``."""

    what = "child process"

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._lock = threading.Lock()

    def _spawn(self, target: Callable[..., None], args: tuple[Any, ...], name: str) -> Connection:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=target, args=(child, *args), name=name, daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent
        return parent

    def call(self, *cmd: Any, within: float | None = None) -> Any:
        if self._conn is None:
            raise RuntimeError(f"{self.what} not started")
        with self._lock:
            self._conn.send(cmd)
            if within is not None and not self._conn.poll(within):
                raise TimeoutError(f"the {self.what} did not answer {cmd[0]} within {within:.0f} s")
            status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"{self.what} command {cmd[0]} failed: {value}")
        return value

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        conn, proc = self._conn, self._proc
        self._conn = self._proc = None
        if conn is not None:
            try:
                conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            conn.close()
        if proc is not None:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


class FakeProcess(ChildProcess):
    """Handle on the fake OpenAI's process."""

    what = "fake OpenAI process"

    def __init__(self, *, turn_latency: float = 0.0, meta_latency: float = 0.0, context_limit: int | None = None):
        super().__init__()
        self._args = (turn_latency, meta_latency, context_limit)
        self.base_url = ""

    def start(self) -> str:
        parent = self._spawn(_serve, self._args, "bench-fake-openai")
        if not parent.poll(30):
            self.stop()
            raise RuntimeError("the fake OpenAI process did not start within 30 s")
        self.base_url = str(parent.recv())
        return self.base_url

    def count(self, method: str, path_prefix: str) -> int:
        return int(self.call("count", method, path_prefix))

    def calls(self) -> list[tuple[str, str]]:
        return [(str(m), str(p)) for m, p in self.call("calls")]

    def turns_arrived(self) -> int:
        """Turns the fake has received so far, including those still sleeping out their latency."""
        return int(self.call("arrived"))

    def reset(self) -> None:
        self.call("reset")

    def delete_conversation(self, conv_id: str) -> None:
        self.call("delete", conv_id)

    def set_latency(self, turn: float, meta: float) -> None:
        self.call("set", "turn_latency", turn)
        self.call("set", "meta_latency", meta)

    def set_context_limit(self, limit: int | None) -> None:
        self.call("set", "context_limit", limit)

    def truncations(self) -> int:
        return int(self.call("truncations"))

    def __enter__(self) -> FakeProcess:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
