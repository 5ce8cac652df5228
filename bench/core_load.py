"""Drive the real core (``build_runtime`` -> ``Core.handle``) on real Redis and the fake OpenAI.

Everything is measured in this process, around ``core.handle``: wall time per
message, round trips counted on the Redis client (:mod:`bench.redis_count`),
HTTP calls counted by the fake, in-flight answers read from ``core.in_flight``.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx2
from openai import AsyncOpenAI
from redis.asyncio import Redis

from bench.fake_proc import FakeProcess
from bench.redis_count import RoundTrips, count_async
from bench.stats import rss_bytes, summary_ms
from bot.assistants.chat import ChatAssistant
from bot.assistants.conversations import ConversationsAssistant
from bot.config import Settings, load_settings
from bot.domain import Incoming, ThreadKey
from bot.errors import BotError
from bot.runtime import Runtime, build_runtime, redis_for

TEXT = "Can you summarise where ticket #{n} stands and what is still open? Two lines are enough."


@dataclass
class RigOptions:
    redis_url: str
    prefix: str
    old_redis_pool: bool = False
    """True: ``Redis.from_url`` (the non-blocking pool ``make_redis`` built before) instead of ``make_redis``."""
    httpx2_transport: bool = False
    """True: the SDK's default httpx2 client instead of the aiohttp transport ``make_client`` ships."""


@dataclass
class Rig:
    runtime: Runtime
    tally: RoundTrips
    fake: FakeProcess
    errors: Counter[str] = field(default_factory=Counter)


def bench_settings(opts: RigOptions, base_url: str, **overrides: Any) -> Settings:
    """Shipped defaults, except what points at the bench's Redis and fake (never reads ``.env``)."""
    values: dict[str, Any] = {
        "_env_file": None,
        "redis_url": opts.redis_url,
        "redis_prefix": opts.prefix,
        "openai_api_key": "bench",
        "openai_base_url": base_url,
        "openai_model": "gpt-test",
        "rate_limit": None,
        "user_daily_tokens": 0,
        "log_level": "WARNING",
        "memory": "off",  # the message path alone; the long-conversation run measures memory on its own
    }
    values.update(overrides)
    return load_settings(**values)


def _redis(opts: RigOptions, settings: Settings) -> Redis:
    if opts.old_redis_pool:  # its asyncio pool raises MaxConnectionsError past 100 concurrent commands
        return Redis.from_url(opts.redis_url, decode_responses=True, socket_timeout=5.0)
    client = redis_for(settings)
    if not isinstance(client, Redis):
        raise TypeError("the bench needs a single Redis, not a cluster")
    return client


_http_wait: ContextVar[list[float] | None] = ContextVar("bench_http_wait", default=None)
"""Per message: seconds spent waiting for the assistant server (request sent -> response headers)."""


async def _on_request(request: httpx2.Request) -> None:
    request.extensions["bench_sent"] = time.perf_counter()


async def _on_response(response: httpx2.Response) -> None:
    waited = _http_wait.get()
    sent = response.request.extensions.get("bench_sent")
    if waited is not None and isinstance(sent, float):
        waited[0] += time.perf_counter() - sent


def _timed(client: AsyncOpenAI) -> None:
    """Two passive timing hooks on the client's own HTTP client (any transport; nothing else changes)."""
    client._client.event_hooks = {"request": [_on_request], "response": [_on_response]}


async def open_rig(opts: RigOptions, fake: FakeProcess, **overrides: Any) -> Rig:
    """``build_runtime`` with the shipped clients (unless ``opts`` asks for an old one), Redis counted."""
    settings = bench_settings(opts, fake.base_url, **overrides)
    tally = RoundTrips()
    runtime = build_runtime(settings, redis=count_async(_redis(opts, settings), tally))
    assistant = runtime.assistant
    if isinstance(assistant, ConversationsAssistant | ChatAssistant):
        if opts.httpx2_transport:
            await assistant.client.close()
            assistant.client = AsyncOpenAI(
                api_key="bench",
                base_url=settings.openai_base_url,
                timeout=settings.openai_timeout,
                max_retries=settings.openai_max_retries,
            )
        _timed(assistant.client)
    return Rig(runtime, tally, fake)


def user_key(n: int, group: str = "u") -> ThreadKey:
    return ThreadKey("slack", "TBENCH", f"D{group}{n}", f"U{group}{n}")


@dataclass(frozen=True, slots=True)
class Handled:
    seconds: float
    """Wall time of ``core.handle``."""
    http_wait: float
    """Part of it spent waiting for the assistant server's response headers."""
    thread_id: str
    """Empty when the message was not answered."""


async def _handle(rig: Rig, key: ThreadKey, n: int) -> Handled:
    """One message through the core; errors are tallied, not raised."""
    msg = Incoming(key, TEXT.format(n=n), message_id=f"m-{uuid.uuid4().hex}")
    waited = [0.0]
    token = _http_wait.set(waited)
    started = time.perf_counter()
    thread_id = ""
    try:
        answer = await rig.runtime.core.handle(msg)
        if answer is None:
            rig.errors["no answer"] += 1
        else:
            thread_id = answer.thread_id
    except BotError as exc:
        rig.errors[type(exc).__name__] += 1
    finally:
        _http_wait.reset(token)
    return Handled(time.perf_counter() - started, waited[0], thread_id)


async def _reset(rig: Rig) -> None:
    await asyncio.to_thread(rig.fake.reset)
    rig.tally.reset()
    rig.errors.clear()


async def _counts(rig: Rig, messages: int) -> dict[str, Any]:
    calls = Counter(f"{m} {p.split('/conv_')[0]}" for m, p in await asyncio.to_thread(rig.fake.calls))
    redis = rig.tally.snapshot()
    return {
        "messages": messages,
        "assistant_calls": sum(calls.values()),
        "assistant_calls_per_message": round(sum(calls.values()) / max(1, messages), 3),
        "assistant_calls_by_path": dict(calls),
        "redis_round_trips": sum(redis.values()),
        "redis_round_trips_per_message": round(sum(redis.values()) / max(1, messages), 3),
        "redis_by_command": dict(redis),
        "errors": dict(rig.errors),
    }


async def one_each(rig: Rig, keys: Sequence[ThreadKey], parallel: int = 50) -> tuple[dict[str, Any], list[str]]:
    """One message per key (at most ``parallel`` at once); counts per message and the thread ids."""
    await _reset(rig)
    gate = asyncio.Semaphore(parallel)

    async def one(i: int, key: ThreadKey) -> Handled:
        async with gate:
            return await _handle(rig, key, i)

    results = await asyncio.gather(*(one(i, k) for i, k in enumerate(keys)))
    counts = await _counts(rig, len(keys))
    counts["latency_ms"] = summary_ms([r.seconds for r in results])
    counts["own_ms"] = summary_ms([r.seconds - r.http_wait for r in results])
    return counts, [r.thread_id for r in results]


async def recovery(rig: Rig, keys: Sequence[ThreadKey], thread_ids: Sequence[str]) -> dict[str, Any]:
    """Delete each key's conversation on the fake (as the dashboard would), then send once more."""
    for thread_id in thread_ids:
        if thread_id:
            await asyncio.to_thread(rig.fake.delete_conversation, thread_id)
    counts, new_ids = await one_each(rig, keys)
    counts["new_threads"] = sum(1 for old, new in zip(thread_ids, new_ids, strict=True) if new and new != old)
    return counts


class _Sampler:
    """Samples ``core.in_flight`` and RSS every 10 ms while a load level runs."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.peak = 0
        self.total = 0
        self.samples = 0
        self.rss_peak = rss_bytes()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        core = self.rig.runtime.core
        while not self._stop.is_set():
            self.peak = max(self.peak, core.in_flight)
            self.total += core.in_flight
            self.samples += 1
            self.rss_peak = max(self.rss_peak, rss_bytes())
            try:
                await asyncio.wait_for(self._stop.wait(), 0.01)
            except TimeoutError:
                pass

    def __enter__(self) -> _Sampler:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()

    async def join(self) -> None:
        if self._task is not None:
            await self._task

    @property
    def mean(self) -> float:
        return self.total / self.samples if self.samples else 0.0


async def load_level(rig: Rig, *, latency: float, concurrency: int, per_user: int) -> dict[str, Any]:
    """``concurrency`` users (threads already made) each send ``per_user`` messages, one after another."""
    await _reset(rig)
    keys = [user_key(i) for i in range(concurrency)]
    samples: list[Handled] = []

    async def user(i: int, key: ThreadKey) -> None:
        for j in range(per_user):
            handled = await _handle(rig, key, i * per_user + j)
            if handled.thread_id:
                samples.append(handled)

    rss_before = rss_bytes()
    started = time.perf_counter()
    with _Sampler(rig) as sampler:
        await asyncio.gather(*(user(i, k) for i, k in enumerate(keys)))
    wall = time.perf_counter() - started
    await sampler.join()
    messages = concurrency * per_user
    level = await _counts(rig, messages)
    answered = len(samples)
    level.update(
        {
            "latency_ms": round(latency * 1000),
            "concurrency": concurrency,
            "per_user": per_user,
            "answered": answered,
            "seconds": round(wall, 3),
            "throughput_per_s": round(answered / wall, 2) if wall else 0.0,
            "in_flight_peak": sampler.peak,
            "in_flight_mean": round(sampler.mean, 1),
            "total_ms": summary_ms([s.seconds for s in samples]),
            "overhead_ms": summary_ms([max(0.0, s.seconds - latency) for s in samples]),
            "own_ms": summary_ms([s.seconds - s.http_wait for s in samples]),
            "rss_growth_mb": round((sampler.rss_peak - rss_before) / 2**20, 1),
            "redis_connections": _redis_connections(rig),
        }
    )
    return level


def _redis_connections(rig: Rig) -> int:
    client = rig.runtime.redis
    if not isinstance(client, Redis):
        return 0
    pool = client.connection_pool
    return len(getattr(pool, "_available_connections", ())) + len(getattr(pool, "_in_use_connections", ()))


async def memory_probe(rig: Rig, *, concurrency: int, latency: float) -> dict[str, Any]:
    """Python heap held per in-flight answer (tracemalloc): a burst of ``concurrency`` messages,
    measured once all of them wait at the fake. RSS is no use here: by now the allocator has
    already grown for this load and reuses its memory (see ``rss_growth_mb`` of the load levels).
    """
    await _reset(rig)
    keys = [user_key(i) for i in range(concurrency)]
    tracemalloc.start()
    tasks = [asyncio.create_task(_handle(rig, k, i)) for i, k in enumerate(keys)]
    deadline = time.monotonic() + latency * 0.9
    arrived = 0
    while time.monotonic() < deadline:
        arrived = await asyncio.to_thread(rig.fake.turns_arrived)
        if arrived >= concurrency:
            break
        await asyncio.sleep(0.02)
    in_flight = rig.runtime.core.in_flight
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    await asyncio.gather(*tasks)
    return {
        "method": "tracemalloc",
        "concurrency": concurrency,
        "in_flight": in_flight,
        "requests_at_fake": arrived,
        "bytes_total": held,
        "kib_per_in_flight": round(held / max(1, in_flight) / 1024, 1),
        "errors": dict(rig.errors),
    }
