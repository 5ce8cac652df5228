"""``python -m bench``: the bot's own cost per message, beside the article's two patterns.

Runs from a checkout (it imports the loopback fake from ``tests/fakes``): real Redis
(``--redis-url``, else ``TEST_REDIS_URL``, else 127.0.0.1:6379 db 9) under a unique key
prefix that is deleted afterwards, and the fake OpenAI in a process of its own.
Writes ``<out>/latest.json`` and ``<out>/latest.png`` and prints the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from bench.baselines import Baselines
from bench.core_load import RigOptions, load_level, memory_probe, one_each, open_rig, recovery, user_key
from bench.fake_proc import FakeProcess
from bench.front_door import FrontConfig, front_doors
from bench.front_report import profile_tables
from bench.front_report import table as front_table
from bench.longconv import long_conversation
from bench.platform_limits import platform_limits
from bench.report import comparison, render

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
PARTS = ("core", "baselines", "long", "limits", "front")
"""What ``python -m bench`` runs: the core, the article's baselines, long conversations, Slack's rate limits
(issue 21), the front doors (issue 19). ``--parts`` picks some."""


@dataclass
class Config:
    redis_url: str
    users: int = 1000
    messages: int = 3
    min_messages: int = 400
    latencies_ms: list[int] = field(default_factory=lambda: [0, 2000])
    meta_latency_ms: int = 200
    concurrency: list[int] = field(default_factory=lambda: [1, 10, 100, 1000])
    recovery_users: int = 50
    baseline_users: int = 50
    probe_latency_ms: int = 12000
    long_turns: int = 200
    context_limit: int = 40
    context_budget: int = 1500
    limit_answers: int = 60
    """DMs, and as many channel mentions, answered at once under Slack's (fake) rate limits."""
    limit_per_second: float = 10.0
    limit_burst: int = 5
    out: Path = DEFAULT_OUT
    chart: bool = True
    front: FrontConfig = field(default_factory=FrontConfig)
    parts: list[str] = field(default_factory=lambda: list(PARTS))

    @classmethod
    def quick(cls, redis_url: str) -> Config:
        """Seconds, not minutes: the smoke test's settings."""
        return cls(
            redis_url=redis_url,
            front=FrontConfig.quick(),
            users=12,
            messages=2,
            min_messages=24,
            latencies_ms=[0, 50],
            meta_latency_ms=20,
            concurrency=[1, 4, 12],
            recovery_users=6,
            baseline_users=4,
            probe_latency_ms=400,
            long_turns=30,
            context_limit=10,
            context_budget=300,
            limit_answers=10,
            limit_per_second=20.0,
        )


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None = None) -> Config:
    default_url = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/9"
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--redis-url", default=default_url, help="Redis to use (keys under a unique prefix, removed after)")
    p.add_argument("--quick", action="store_true", help="tiny run of a few seconds (the smoke test's)")
    p.add_argument("--users", type=int, help="users with a thread = the largest concurrency (1000)")
    p.add_argument("--messages", type=int, help="messages per user per load level with latency > 0 (3)")
    p.add_argument("--min-messages", type=int, help="messages per load level at 0 ms latency (400)")
    p.add_argument("--latency-ms", type=_ints, help="assistant latencies to sweep, comma-separated (0,2000)")
    p.add_argument("--meta-latency-ms", type=int, help="latency of non-turn calls (retrieve, create), capped (200)")
    p.add_argument("--concurrency", type=_ints, help="concurrent conversations to sweep (1,10,100,1000)")
    p.add_argument("--baseline-users", type=int, help="users served by each baseline's 10 workers (50)")
    p.add_argument("--probe-latency-ms", type=int, help="turn latency while memory is measured (12000)")
    p.add_argument("--long-turns", type=int, help="turns of the long-conversation run (200)")
    p.add_argument("--context-limit", type=int, help="items the fake keeps in context (40)")
    p.add_argument("--context-budget", type=int, help="CONTEXT_BUDGET of the chat backend (1500)")
    p.add_argument("--limit-answers", type=int, help="DMs and as many mentions at once under Slack's limits (60)")
    p.add_argument("--out", type=Path, help="directory for latest.json and latest.png (bench/results)")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG")
    p.add_argument("--parts", type=_names, help=f"parts to run, comma-separated ({','.join(PARTS)})")
    p.add_argument("--front-doors", type=_names, help="front doors (slack_http,slack_socket,discord,baseline,floor)")
    p.add_argument("--front-users", type=int, help="users at once at each front door (100)")
    p.add_argument("--front-messages", type=int, help="messages per user per front-door level (5)")
    p.add_argument("--front-latency-ms", type=_ints, help="assistant latencies of the front doors (0,1000)")
    p.add_argument("--no-profile", action="store_true", help="no cProfile level at the front doors")
    p.add_argument("--no-spread", action="store_true",
                   help="no front-door level whose users start at random within one latency")
    p.add_argument("--front-event-loop", choices=("auto", "uvloop", "asyncio"),
                   help="EVENT_LOOP of the bot at the front doors (auto: uvloop where installed)")
    p.add_argument("--front-stream-users", type=int,
                   help="answers streaming at once in the front doors' streams level, 0 for none (300)")
    args = p.parse_args(argv)
    cfg = Config.quick(args.redis_url) if args.quick else Config(redis_url=args.redis_url)
    for name in ("users", "messages", "min_messages", "meta_latency_ms", "concurrency", "baseline_users",
                 "probe_latency_ms", "long_turns", "context_limit", "context_budget", "limit_answers", "out"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    if args.latency_ms is not None:
        cfg.latencies_ms = args.latency_ms
    if args.parts is not None:
        unknown = set(args.parts) - set(PARTS)
        if unknown:
            p.error(f"unknown part(s): {', '.join(sorted(unknown))}")
        cfg.parts = args.parts
    for name, attr in (("front_doors", "doors"), ("front_users", "users"), ("front_messages", "messages"),
                       ("front_latency_ms", "latencies_ms"), ("front_stream_users", "stream_users"),
                       ("front_event_loop", "event_loop")):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg.front, attr, value)
    cfg.front.profile = cfg.front.profile and not args.no_profile
    cfg.front.spread = cfg.front.spread and not args.no_spread
    cfg.concurrency = sorted({c for c in cfg.concurrency if 0 < c <= cfg.users}) or [cfg.users]
    cfg.chart = not args.no_chart
    return cfg


async def _core_part(cfg: Config, opts: RigOptions, fake: FakeProcess) -> dict[str, Any]:
    rig = await open_rig(opts, fake)
    out: dict[str, Any] = {}
    try:
        await asyncio.to_thread(fake.set_latency, 0.0, 0.0)
        keys = [user_key(i) for i in range(cfg.users)]
        out["first_message"], thread_ids = await one_each(rig, keys)
        out["happy_path"], _ = await one_each(rig, keys[: min(cfg.users, 200)])
        n = min(cfg.recovery_users, cfg.users)
        out["recovery"] = await recovery(rig, keys[:n], thread_ids[:n])
        levels: list[dict[str, Any]] = []
        for latency_ms in cfg.latencies_ms:
            latency = latency_ms / 1000
            await asyncio.to_thread(fake.set_latency, latency, min(cfg.meta_latency_ms, latency_ms) / 1000)
            for c in cfg.concurrency:
                per_user = cfg.messages if latency_ms else max(cfg.messages, math.ceil(cfg.min_messages / c))
                level = await load_level(rig, latency=latency, concurrency=c, per_user=per_user)
                logging.getLogger("bench").info(
                    "core %5d ms x %4d: %8.1f msg/s, overhead p99 %.2f ms, errors %s",
                    latency_ms, c, level["throughput_per_s"], level["overhead_ms"].get("p99", 0), level["errors"],
                )
                levels.append(level)
        out["levels"] = levels
        out["variants"] = await _variants(cfg, opts, fake)
        probe = cfg.probe_latency_ms / 1000
        await asyncio.to_thread(fake.set_latency, probe, 0.0)
        c = max(cfg.concurrency)
        out["memory"] = [await memory_probe(rig, concurrency=c, latency=probe)]
    finally:
        await rig.runtime.close()
    return out


VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("as shipped: make_redis (blocking pool of 100) + make_client (aiohttp transport)", {}),
    ("make_redis + the SDK's default httpx2 client (make_client before)", {"httpx2_transport": True}),
    ("Redis.from_url, non-blocking pool (make_redis before) + make_client", {"old_redis_pool": True}),
)
"""Client set-ups compared at the largest load, each in a fresh runtime: what ships, and what each change fixed."""


async def _variants(cfg: Config, opts: RigOptions, fake: FakeProcess) -> list[dict[str, Any]]:
    latency_ms, c = max(cfg.latencies_ms), max(cfg.concurrency)
    await asyncio.to_thread(fake.set_latency, latency_ms / 1000, min(cfg.meta_latency_ms, latency_ms) / 1000)
    rows: list[dict[str, Any]] = []
    for name, changes in VARIANTS:
        variant = replace(opts, **changes)
        rig = await open_rig(variant, fake)
        core_log = logging.getLogger("threadkeeper")
        level_before = core_log.level
        core_log.setLevel(logging.CRITICAL)  # the old pool logs one line per failed message: counted instead
        try:
            level = await load_level(rig, latency=latency_ms / 1000, concurrency=c, per_user=cfg.messages)
        finally:
            core_log.setLevel(level_before)
            await rig.runtime.close()
        logging.getLogger("bench").info("variant %s: %.1f msg/s, errors %s", name, level["throughput_per_s"],
                                        level["errors"])
        rows.append({"name": name, **changes, "level": level})
    return rows


def _baseline_part(cfg: Config, fake: FakeProcess, prefix: str) -> dict[str, Any]:
    base = Baselines(fake, cfg.redis_url, prefix)
    out: dict[str, Any] = {}
    try:
        users = [f"B{i}" for i in range(cfg.baseline_users)]
        for pattern in base.patterns:
            fake.set_latency(0.0, 0.0)
            entry = base.first_and_recovery(pattern, users)
            entry["levels"] = []
            for latency_ms in cfg.latencies_ms:
                latency = latency_ms / 1000
                fake.set_latency(latency, min(cfg.meta_latency_ms, latency_ms) / 1000)
                per_user = 1 if latency_ms else max(1, math.ceil(cfg.min_messages / len(users)))
                level = base.run(pattern, users, per_user, latency)
                logging.getLogger("bench").info(
                    "%-10s %5d ms: %8.1f msg/s", pattern.name, latency_ms, level["throughput_per_s"]
                )
                entry["levels"].append(level)
            out[pattern.name] = entry
    finally:
        base.close()
    return out


def _cleanup(redis_url: str, prefix: str) -> int:
    client = redis.Redis.from_url(redis_url)
    removed = 0
    try:
        batch = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(batch), 500):
            removed += int(client.delete(*batch[start : start + 500]))
    finally:
        client.close()
    return removed


async def run_bench(cfg: Config) -> dict[str, Any]:
    """Run the parts of ``cfg.parts``; returns the results (also written to ``cfg.out``)."""
    prefix = f"tkbench{uuid.uuid4().hex[:10]}"
    opts = RigOptions(cfg.redis_url, prefix)
    started, load_before = time.time(), os.getloadavg()
    parts = set(cfg.parts)
    found: dict[str, Any] = {}
    fake = FakeProcess()
    if parts - {"front"}:
        await asyncio.to_thread(fake.start)
    try:
        if "core" in parts:
            found["core"] = await _core_part(cfg, opts, fake)
        if "baselines" in parts:
            found["baselines"] = await asyncio.to_thread(_baseline_part, cfg, fake, prefix)
        if "long" in parts:
            found["long_conversation"] = await long_conversation(
                opts, fake, turns=cfg.long_turns, context_limit=cfg.context_limit, budget=cfg.context_budget
            )
        if "limits" in parts:
            await asyncio.to_thread(fake.set_latency, 0.0, 0.0)
            found["platform_limits"] = await platform_limits(opts, fake.base_url, answers=cfg.limit_answers,
                                                             per_second=cfg.limit_per_second, burst=cfg.limit_burst)
        if "front" in parts:
            found["front_doors"] = await front_doors(cfg.front, redis_url=cfg.redis_url, prefix=prefix)
    finally:
        await asyncio.to_thread(fake.stop)
        await asyncio.to_thread(_cleanup, cfg.redis_url, prefix)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
              if k not in ("redis_url", "front")}
    results: dict[str, Any] = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "system": platform.system(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "config": config,
        **found,
    }
    if "core" in found and "baselines" in found:
        results["comparison"] = comparison(results)
    cfg.out.mkdir(parents=True, exist_ok=True)
    if "front_doors" in found:
        front = {k: results[k] for k in ("generated", "duration_s", "machine")} | found["front_doors"]
        (cfg.out / "front_door.json").write_text(json.dumps(front, indent=1, default=str) + "\n", encoding="utf-8")
        (cfg.out / "front_door_profile.md").write_text(_profile_page(front), encoding="utf-8")
    if {"core", "baselines", "long"} <= parts:
        (cfg.out / "latest.json").write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
        if cfg.chart:
            from bench.chart import render_chart

            render_chart(results, cfg.out / "latest.png")
    return results


def _profile_page(front: dict[str, Any]) -> str:
    head = [
        "# Where an answer's CPU goes, per front door",
        "",
        f"`python -m bench` ({front['generated']}, {front['machine']['cpus']} cores, Python "
        f"{front['machine']['python']}): the last level of each door run again under cProfile (timed by the CPU "
        "time of the event loop's thread, from SIGUSR1 to SIGUSR2 in `bench/bot_proc.py`, so start-up is not in it). "
        "Cumulative times of coroutines count only while they run, not while they wait. The profiler itself "
        "multiplies the CPU time by four to five; the shares are what matter. Event-loop plumbing (`asyncio`, "
        "`selectors`) contains everything and is left out of the first table of each door; the second table sums each "
        "function's own time by where it lives.",
        "",
    ]
    return "\n".join([*head, *profile_tables(front)]) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    results = asyncio.run(run_bench(cfg))
    if "comparison" in results and "long_conversation" in results:
        print(render(results))
    if "front_doors" in results:
        print("\n".join(["", *front_table(results["front_doors"])]))
    print(f"\nwrote to {cfg.out}")
    return 0
