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

A paced stream (:meth:`BenchFake.pace`, off by default) makes every answer longer (the echo, then filler words up
to a set count: :func:`paced_answer`) and sends a streamed turn's text a few words at a time, one delta every
``interval`` after the turn latency, as a model writes (issue 19's "3 words per 100 ms").
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.fakes.openai_server import FakeOpenAI

TURN_PATHS = ("/v1/responses", "/v1/chat/completions")
FILLER = ("and", "then", "the", "answer", "goes", "on", "in", "plain", "words", "as", "a", "model", "writes", "them")
"""Words a paced answer is padded with after its echo."""
JSON = dict[str, Any]


def paced_answer(text: str, words: int) -> str:
    """``echo: <text>`` followed by filler words up to ``words`` words in all: still unique per message, still
    beginning as the short answer does (the front-door driver matches answers by their beginning)."""
    head = f"echo: {text}"
    extra = max(0, words - len(head.split()))
    return " ".join([head, *(FILLER[n % len(FILLER)] for n in range(extra))])


def word_chunks(text: str, words: int) -> list[str]:
    """``text`` cut after every ``words`` words (each piece keeps its trailing spaces: they join back to ``text``)."""
    tokens = re.findall(r"\s*\S+\s*", text) if text.strip() else [text]
    return ["".join(tokens[i : i + words]) for i in range(0, len(tokens), max(1, words))]


class BenchFake(FakeOpenAI):
    """The fake with separate latencies for turns and for metadata calls."""

    def __init__(self, *, turn_latency: float, meta_latency: float, context_limit: int | None) -> None:
        super().__init__(latency=0.0, context_limit=context_limit, reply=self._reply)
        self.turn_latency = turn_latency
        self.meta_latency = meta_latency
        self.turns_arrived = 0
        """Turns received, counted on arrival (``calls`` records a call after its latency)."""
        self.stream_words = 0
        """Paced stream: words per streamed text delta (0: off, the fake's own three deltas sent at once)."""
        self.answer_words = 0
        """Paced stream: words of every answer (the echo, then filler)."""

    def pace(self, words: int, interval: float, answer_words: int) -> None:
        """Stream ``words`` words every ``interval`` seconds, answers of ``answer_words`` words; ``words=0``: off."""
        self.stream_words = max(0, words)
        self.answer_words = answer_words if words else 0
        self.stream_delay = interval if words else 0.0  # slept after each text delta (tests.fakes.openai_server)

    def answer(self, text: str) -> str:
        """The whole answer to a user's ``text``, as the fake will write it now."""
        return paced_answer(text, self.answer_words) if self.stream_words else f"echo: {text}"

    def _reply(self, text: str, _before: list[JSON]) -> str:
        return self.answer(text)

    async def _sse(self, request: web.Request, events: Iterable[JSON], *, named: bool) -> web.StreamResponse:
        return await super()._sse(request, self._events(events), named=named)

    def _events(self, events: Iterable[JSON]) -> Iterator[JSON]:
        """The streamed events as sent: with a paced stream, each run of text deltas cut again into
        ``stream_words`` words apiece (sequence numbers renumbered); otherwise as given."""
        if not self.stream_words:
            yield from events
            return
        seq = 0
        run: list[JSON] = []

        def numbered(event: JSON) -> JSON:
            nonlocal seq
            seq += 1
            return {**event, "sequence_number": seq - 1} if "sequence_number" in event else event

        def recut() -> Iterator[JSON]:
            text = "".join(str(e.get("delta") or "") for e in run)
            for piece in word_chunks(text, self.stream_words):
                yield numbered({**run[0], "delta": piece})
            run.clear()

        for event in events:
            if event.get("type") == "response.output_text.delta":
                run.append(event)
                continue
            if run:
                yield from recut()
            yield numbered(event)
        if run:
            yield from recut()

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
