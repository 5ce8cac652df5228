"""Issue 19's streams level: K answers streaming at once, paced as a model writes them.

The target it measures: "First visible text after the assistant's first token (streaming at 3 words per 100 ms):
p99 <= 250 ms with 300 answers streaming at once, for DMs and for thread streams."

K users (``FrontConfig.stream_users``) each send one first message (new users, their conversation is created; the
answers short and sent at once, as in the other levels), then all K send one more message at once, at the largest
assistant latency of the run. The fake OpenAI answers each of those with ``stream_answer_words`` words (the echo,
then filler) and streams them ``stream_words`` words every ``stream_interval_ms`` after the turn latency
(:meth:`bench.fake_proc.BenchFake.pace`), so all K answers stream together. Per door:

* Slack (HTTP, Socket Mode): **mentions** in a channel of the user's own (the answer streams in the thread), in the
  door's own process (``SLACK_AGENT_VIEW=off``, as its other levels), after its other levels; and **DMs** in a second
  process with ``SLACK_AGENT_VIEW`` at its default (on: each top-level DM is answered, streamed, in a thread of its
  own, named with ``assistant.threads.setTitle``, with a status from ``assistant.threads.setStatus``);
* Discord: DMs (posted at the first text, then edited), in the door's own process after its other levels;
* the floor (:mod:`bench.front_floor`): mentions, as Slack's.

Figures: first streamed token at the fake -> first text on the platform (the target's), first token -> the complete
answer on the platform (the paced stream itself lasts ``stream_ms``), event -> first text, CPU ms of the process per
answer, platform and assistant calls per answer (``chat.appendStream`` shows the stream's throttle).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from bench.front_bot import BotProcess, door_env, free_port
from bench.front_driver import FakesProcess, per_answer, records
from bench.stats import summary_ms

if TYPE_CHECKING:
    from bench.front_door import FrontConfig

log = logging.getLogger("bench")
KINDS = {"slack_http": ("mention", "dm"), "slack_socket": ("mention", "dm"), "discord": ("dm",), "floor": ("mention",)}
"""The streams levels of each door (the baseline has none: it does not stream; the floor starts its stream at the
first token and stops it with the rest at the end, so its first texts are the least this machine allows)."""


def summarize_streams(
    new: dict[str, Any],
    phase: dict[str, Any],
    cfg: FrontConfig,
    *,
    kind: str,
    latency_ms: int,
    meta_ms: int,
    cpu_s: float,
) -> dict[str, Any]:
    """The streams level's figures from its two phases (records on the fakes' clock) and the measured one's CPU."""
    recs, fresh = records(phase), records(new)
    done = [r for r in recs if r["done"] is not None]
    answers = len(done)
    timed = [r for r in recs if r["first_output"] is not None]
    deltas = math.ceil(cfg.stream_answer_words / max(1, cfg.stream_words))
    platform = phase["calls"]["slack"] or phase["calls"]["discord"]
    return {
        "kind": kind,
        "users": cfg.stream_users,
        "latency_ms": latency_ms,
        "meta_latency_ms": meta_ms,
        "answer_words": cfg.stream_answer_words,
        "words_per_delta": cfg.stream_words,
        "delta_interval_ms": cfg.stream_interval_ms,
        "stream_ms": deltas * cfg.stream_interval_ms,
        "messages": len(recs),
        "answered": answers,
        "not_answered": len(recs) - answers + sum(r["done"] is None for r in fresh),
        "strays": phase["strays"] + new["strays"],
        "seconds": round(max(r["done"] for r in done) - min(r["sent"] for r in recs), 3) if done else 0.0,
        "first_token_to_visible_ms": summary_ms(
            [r["visible"] - r["first_output"] for r in timed if r["visible"] is not None]
        ),
        "first_token_to_done_ms": summary_ms([r["done"] - r["first_output"] for r in timed if r["done"] is not None]),
        "to_first_text_ms": summary_ms([r["visible"] - r["sent"] for r in recs if r["visible"] is not None]),
        "cpu_ms_per_answer": round(cpu_s * 1000 / answers, 3) if answers else None,
        "cpu_s": round(cpu_s, 3),
        "platform_calls_per_answer": per_answer(platform, answers),
        "assistant_calls_per_answer": per_answer(phase["calls"]["openai"], answers),
        "new_users": {
            "answered": sum(r["done"] is not None for r in fresh),
            "platform_calls_per_answer": per_answer(new["calls"]["slack"] or new["calls"]["discord"], len(fresh)),
        },
    }


def stream_level(
    fakes: FakesProcess, bot: BotProcess, cfg: FrontConfig, *, door: str, kind: str, tag: str
) -> dict[str, Any]:
    """One streams level against ``bot`` (already started and connected)."""
    latency_ms = max(cfg.latencies_ms)
    meta_ms = min(cfg.meta_latency_ms, latency_ms)
    fakes.call("latency", latency_ms / 1000, meta_ms / 1000)
    spec = {
        "door": door,
        "kind": kind,
        "tag": tag,
        "users": cfg.stream_users,
        "first": 0,
        "messages": 1,
        "timeout": cfg.timeout,
        "url": bot.url,
    }
    new = dict(fakes.call("phase", spec))
    fakes.call("pace", cfg.stream_words, cfg.stream_interval_ms / 1000, cfg.stream_answer_words)
    try:
        cpu_before = bot.cpu_seconds()
        measured = dict(fakes.call("phase", spec | {"first": 1}))
        cpu = bot.cpu_seconds() - cpu_before
    finally:
        fakes.call("pace", 0, 0.0, 0)
    out = summarize_streams(new, measured, cfg, kind=kind, latency_ms=latency_ms, meta_ms=meta_ms, cpu_s=cpu)
    out["fakes_cpu_s"] = round(measured["fakes_cpu_s"], 3)  # the other side (fakes and driver): is it the limit?
    out["agent_view"] = False  # Slack's agent view: on in dm_streams' process only
    ftv = out["first_token_to_visible_ms"]
    log.info(
        "front %-12s streams, %s x %d at once: first token -> text p50/p99 %.1f/%.1f ms, %.2f CPU ms/answer, "
        "%d not answered, %s",
        door,
        kind,
        cfg.stream_users,
        ftv.get("p50", 0),
        ftv.get("p99", 0),
        out["cpu_ms_per_answer"] or 0,
        out["not_answered"],
        out["platform_calls_per_answer"],
    )
    return out


def dm_streams(
    fakes: FakesProcess, door: str, cfg: FrontConfig, *, redis_url: str, prefix: str, tag: str
) -> dict[str, Any]:
    """A Slack door's DMs level, in a process of its own with ``SLACK_AGENT_VIEW`` at its default (on)."""
    env = door_env(door, fakes.urls, redis_url=redis_url, prefix=prefix, port=free_port(), agent_view=True,
                   event_loop=cfg.event_loop)
    bot = BotProcess(door, env)
    before = fakes.call("totals")
    bot.start()
    try:
        fakes.call("ready", door, before["slack_sockets"])
        level = stream_level(fakes, bot, cfg, door=door, kind="dm", tag=tag)
        memory = bot.memory_kib()
    finally:
        code = bot.stop()
        stderr = bot.stderr()
        bot.close()
    after = fakes.call("totals")
    level["agent_view"] = True
    level["process"] = {
        "startup_s": round(bot.started_s, 2),
        "peak_rss_mib": round(memory.get("VmHWM", 0) / 1024, 1),
        "auth_test_calls": after["slack"].get("auth.test", 0) - before["slack"].get("auth.test", 0),
        "exit_code": code,
        "stderr_warnings": [line for line in stderr.splitlines() if " WARNING " in line or " ERROR " in line][:20],
    }
    return level
