"""Issue 21's run: under a fixed Slack rate limit, how long until the last of many answers is complete.

``answers`` DMs and ``answers`` mentions in one busy channel arrive at once, as signed HTTP events to the
real Bolt app (:class:`~adapters.slack.SlackAdapter`), answered by the real core on the bench's Redis and
the fake OpenAI. The loopback fake Slack (``tests/fakes/slack_server.py``) limits every chat method of the
workspace to ``burst`` calls at once, then ``per_second`` (and ``chat.postMessage`` to one a second per
channel), answering 429 + ``Retry-After`` like Slack. Each run has a workspace of its own (fresh lanes).

Runs: one worker; two workers (two adapters, two runtimes) sharing the workspace's lanes in Redis as
shipped; and two workers each pacing on its own (``runtime.pacer = None``), for comparison.

Reported per run: when the last answer was complete (its task done, seconds after the events were
sent), p50/p95 of the same, the budget's lower bound for the busiest lane (``(answers - burst) /
per_second``), refusals by method, calls that went through, and the checks: every final text complete,
no call back before its ``Retry-After``, no text posted twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import time
from collections import Counter
from typing import Any

import aiohttp

from adapters.slack import SlackAdapter
from bench.core_load import RigOptions, bench_settings
from bench.stats import summary_ms
from bot.runtime import Runtime, build_runtime
from tests.fakes.slack_server import BOT_USER_ID, FakeSlack, dm_event, event_envelope, mention_event, sign

SECRET = "bench-signing-secret"
CHAT = ("chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream", "chat.stopStream")
RUNS: tuple[tuple[str, int, bool, bool], ...] = (
    ("1 worker, no rate limit (reference)", 1, True, False),
    ("1 worker", 1, True, True),
    ("2 workers, shared lanes (as shipped)", 2, True, True),
    ("2 workers, each pacing on its own", 2, False, True),
)
"""(name, workers, whether the workers share the workspace's lanes in Redis, whether the fake limits)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Worker:
    """One adapter on its own runtime, its answers' end times recorded."""

    def __init__(self, adapter: SlackAdapter, runtime: Runtime) -> None:
        self.adapter = adapter
        self.runtime = runtime
        self.ended: list[float] = []
        answer = adapter._answer

        async def timed(*args: Any, **kwargs: Any) -> None:
            try:
                await answer(*args, **kwargs)
            finally:
                self.ended.append(time.monotonic())

        adapter._answer = timed  # type: ignore[method-assign]


async def _one_run(opts: RigOptions, openai_url: str, index: int, *, workers: int, shared: bool, limited: bool,
                   answers: int, per_second: float, burst: int) -> dict[str, Any]:
    team, token = f"TLIMIT{index}", f"xoxb-bench-{index}"
    async with FakeSlack() as slack, aiohttp.ClientSession() as http:
        slack.token_teams[token] = team
        if limited:
            for method in CHAT:
                slack.rate_limit(method, per_second=per_second, burst=burst)
            slack.rate_limit_channel("chat.postMessage", per_second=1, burst=1)
        started: list[_Worker] = []
        try:
            for _ in range(workers):
                settings = bench_settings(opts, openai_url, slack_bot_token=token, slack_signing_secret=SECRET,
                                          slack_api_url=slack.api_url, port=_free_port(), slack_agent_view=False)
                runtime = build_runtime(settings)
                if not shared:
                    runtime.pacer = None
                adapter = SlackAdapter(runtime, host="127.0.0.1")
                started.append(_Worker(adapter, runtime))
                await adapter.start()
            dms = [dm_event(f"question {i}", user=f"U{index}{i:04d}", channel=f"D{index}{i:04d}")
                   for i in range(answers)]
            mentions = [mention_event(f"<@{BOT_USER_ID}> topic {i}", user=f"U{index}{i:04d}", channel=f"C{index}BUSY")
                        for i in range(answers)]
            events = [e for pair in zip(dms, mentions, strict=True) for e in pair]
            sent_at = time.monotonic()

            async def post(worker: _Worker, event: dict[str, Any]) -> None:
                body = json.dumps(event_envelope(event, team=team))
                url = f"http://127.0.0.1:{worker.adapter.settings.port}/slack/events"
                headers = {"Content-Type": "application/json", **sign(body, SECRET)}
                async with http.post(url, data=body.encode(), headers=headers) as resp:
                    resp.raise_for_status()

            await asyncio.gather(*(post(started[(i // 2) % workers], e) for i, e in enumerate(events)))
            await asyncio.gather(*(w.adapter.settle(within=600) for w in started))
        finally:
            for worker in started:
                await worker.adapter.stop(5.0)
                await worker.runtime.close()
        ends = sorted(t - sent_at for w in started for t in w.ended)
        complete = sum(
            [m.text for m in slack.in_thread(e["channel"], None)] == [f"echo: {e['text']}"] for e in dms
        ) + sum(
            [(m.text, m.streaming) for m in slack.in_thread(e["channel"], e["ts"])]
            # A channel thread is one shared conversation (THREAD_SCOPE=shared): the turn carries its speaker.
            == [(f"echo: {slack.name_of(e['user'])}: {e['text'].split('> ', 1)[1]}", False)] for e in mentions
        )
        granted = Counter(c.method for c in slack.calls if c.method in CHAT and not c.refused)
        return {
            "workers": workers,
            "shared_lanes": shared,
            "limited": limited,
            "answers": 2 * answers,
            "complete": complete,
            "last_answer_s": round(ends[-1], 2) if ends else None,
            "answer_end_ms": summary_ms(ends),
            "budget_bound_s": round(max(0, answers - burst) / per_second, 2) if limited else None,
            "refused": len(slack.refused),
            "refused_by_method": dict(Counter(r.method for r in slack.refused)),
            "calls_by_method": dict(granted),
            "early_retries": len(slack.early_retries()),
            "duplicate_posts": len(slack.duplicate_posts()),
        }


async def platform_limits(opts: RigOptions, openai_url: str, *, answers: int, per_second: float,
                          burst: int) -> dict[str, Any]:
    """Every run of :data:`RUNS`; ``answers`` DMs plus as many mentions in each."""
    out: dict[str, Any] = {"limit": {"per_second": per_second, "burst": burst, "methods": list(CHAT),
                                     "post_per_channel_per_second": 1}, "runs": []}
    for index, (name, workers, shared, limited) in enumerate(RUNS):
        run = await _one_run(opts, openai_url, index, workers=workers, shared=shared, limited=limited,
                             answers=answers, per_second=per_second, burst=burst)
        logging.getLogger("bench").info(
            "limits %-38s last answer %6.2f s (bound %s s), %d refused, %d/%d complete", name,
            run["last_answer_s"] or math.nan, run["budget_bound_s"], run["refused"], run["complete"], run["answers"])
        out["runs"].append({"name": name, **run})
    return out
