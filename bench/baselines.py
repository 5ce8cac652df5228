"""The two patterns of the expiring-threads article, written as the article writes them.

A synchronous ``openai.OpenAI`` client and a synchronous ``redis.Redis`` store
the user's thread id under one key; listeners run on a pool of 10 worker
threads, the way a synchronous Bolt app runs them. Nothing else: no dedupe, no
per-thread lock, no transcript to re-prime a new thread.

- lazy check: ``conversations.retrieve`` before every send; create + save when gone.
- fail fast (the article's recommendation): send; on 404 create, save, send again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import openai
import redis

from bench.fake_proc import FakeProcess
from bench.redis_count import RoundTrips, count_sync
from bench.stats import summary_ms

INSTRUCTIONS = "You are a helpful assistant in a team chat."
MODEL = "gpt-test"
WORKERS = 10


class Pattern(Protocol):
    name: str

    def handle(self, user: str, text: str) -> str: ...

    def key(self, user: str) -> str: ...


class _Base:
    name = ""

    def __init__(self, client: openai.OpenAI, store: redis.Redis, prefix: str) -> None:
        self.client = client
        self.store = store
        self.prefix = prefix

    def key(self, user: str) -> str:
        return f"{self.prefix}:baseline:{self.name}:{user}"

    def new_thread(self, user: str) -> str:
        thread_id = self.client.conversations.create().id
        self.store.set(self.key(user), thread_id)
        return thread_id

    def send(self, thread_id: str, text: str) -> str:
        response = self.client.responses.create(
            model=MODEL, conversation=thread_id, input=text, instructions=INSTRUCTIONS
        )
        return response.output_text


class LazyCheck(_Base):
    name = "lazy_check"

    def handle(self, user: str, text: str) -> str:
        thread_id = self.store.get(self.key(user))
        if thread_id:
            try:
                self.client.conversations.retrieve(str(thread_id))
            except openai.NotFoundError:
                thread_id = None
        if not thread_id:
            thread_id = self.new_thread(user)
        return self.send(str(thread_id), text)


class FailFast(_Base):
    name = "fail_fast"

    def handle(self, user: str, text: str) -> str:
        thread_id = self.store.get(self.key(user))
        if not thread_id:
            thread_id = self.new_thread(user)
        try:
            return self.send(str(thread_id), text)
        except openai.NotFoundError:
            return self.send(self.new_thread(user), text)


class Baselines:
    """Both patterns on one sync client pair, with their Redis round trips counted."""

    def __init__(self, fake: FakeProcess, redis_url: str, prefix: str) -> None:
        self.fake = fake
        self.tally = RoundTrips()
        self.store = count_sync(redis.Redis.from_url(redis_url, decode_responses=True), self.tally)
        self.client = openai.OpenAI(api_key="bench", base_url=fake.base_url, timeout=60.0, max_retries=2)
        self.patterns: list[Pattern] = [
            LazyCheck(self.client, self.store, prefix),
            FailFast(self.client, self.store, prefix),
        ]

    def close(self) -> None:
        self.client.close()
        self.store.close()

    def _reset(self) -> None:
        self.fake.reset()
        self.tally.reset()

    def _counts(self, messages: int) -> dict[str, Any]:
        calls = Counter(f"{m} {p.split('/conv_')[0]}" for m, p in self.fake.calls())
        rt = self.tally.snapshot()
        return {
            "messages": messages,
            "assistant_calls_per_message": round(sum(calls.values()) / max(1, messages), 3),
            "assistant_calls_by_path": dict(calls),
            "redis_round_trips_per_message": round(sum(rt.values()) / max(1, messages), 3),
            "redis_by_command": dict(rt),
        }

    def run(self, pattern: Pattern, users: Sequence[str], per_user: int, latency: float) -> dict[str, Any]:
        """Each user sends ``per_user`` messages, the next after the answer; 10 workers serve them all."""
        self._reset()
        lock = threading.Lock()
        service: list[float] = []
        waited: list[float] = []
        errors: Counter[str] = Counter()
        busy = [0, 0]  # now, peak
        left = [len(users) * per_user]
        done = threading.Event()

        def work(user: str, n: int) -> None:
            start = time.perf_counter()
            with lock:
                busy[0] += 1
                busy[1] = max(busy[1], busy[0])
            try:
                pattern.handle(user, f"message {n} from {user}")
            finally:
                with lock:
                    busy[0] -= 1
                    service.append(time.perf_counter() - start)

        def submit(pool: ThreadPoolExecutor, user: str, n: int) -> None:
            queued = time.perf_counter()
            future = pool.submit(work, user, n)

            def finished(fut: Future[None]) -> None:
                exc = fut.exception()
                with lock:
                    waited.append(time.perf_counter() - queued)
                    if exc is not None:
                        errors[type(exc).__name__] += 1
                    left[0] -= 1
                    last = left[0] == 0
                if n + 1 < per_user:
                    submit(pool, user, n + 1)
                elif last:
                    done.set()

            future.add_done_callback(finished)

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix=pattern.name) as pool:
            for user in users:
                submit(pool, user, 0)
            done.wait()
        wall = time.perf_counter() - started
        result = self._counts(len(users) * per_user)
        result.update(
            {
                "pattern": pattern.name,
                "latency_ms": round(latency * 1000),
                "users": len(users),
                "workers": WORKERS,
                "seconds": round(wall, 3),
                "throughput_per_s": round(len(service) / wall, 2) if wall else 0.0,
                "in_flight_peak": busy[1],
                "service_ms": summary_ms(service),
                "user_wait_ms": summary_ms(waited),
                "overhead_ms": summary_ms([max(0.0, s - latency) for s in service]),
                "errors": dict(errors),
            }
        )
        return result

    def first_and_recovery(self, pattern: Pattern, users: Sequence[str]) -> dict[str, Any]:
        """Counts for a user's first message, the happy path, and recovery after a deleted thread."""
        out: dict[str, Any] = {}
        out["first"] = self.run(pattern, users, 1, 0.0)
        out["happy"] = self.run(pattern, users, 1, 0.0)
        for user in users:
            thread_id = self.store.get(pattern.key(user))
            if thread_id:
                self.fake.delete_conversation(str(thread_id))
        out["recovery"] = self.run(pattern, users, 1, 0.0)
        return out
