"""Issue 19: what an answer costs through each front door, beside a plain synchronous Bolt app and the floor.

For each door (Slack HTTP mode, Slack Socket Mode, Discord, the baseline of :mod:`bench.front_baseline` over
HTTP, and the floor of :mod:`bench.front_floor`: the least wire work, what the machine allows) one measured
process is started (:mod:`bench.front_bot`) against the fakes' process (:mod:`bench.front_driver`), and runs the
same levels:

* one user, ``solo_messages`` messages at 0 ms: the whole path's overhead at one conversation;
* ``few_users`` users at the largest latency: new users' time to first text against returning users', at
  low load;
* ``users`` users x ``messages`` messages at each assistant latency: throughput against the
  ``users / latency`` ceiling, answer latency minus the assistant's (split at the assistant's first token: the way
  in, the way out), CPU ms of the process per answer (and of the fakes' process, the other side), first streamed
  token -> first text on the platform, platform and assistant calls per answer;
* with ``spread``, ``users`` users x ``messages`` messages at the largest latency again, each user's first
  measured message going out at a random moment of one latency, as independent users' do. All users starting
  together is the worst case, and it lasts: an event loop serves a burst by turns, so most of the burst's
  answers complete near its end and their users' next messages arrive together again.

Throughput is read two ways: answers over the level's wall time (the first rounds' figure), and the users' own
(:func:`users_throughput`: each user's answers over their own span), which a spread start does not lower.

Each level first has every user send one message (new users: their conversation is created), then
the ``messages`` measured ones (returning users); new users' time to first text is compared with the
returning users'. Slack events are mentions in a channel of the user's own (the answer streams in
the thread); Discord messages are DMs. Then, with ``profile``, one more level at the largest
latency runs under cProfile (``bench.bot_proc``) and its top functions are kept. Last, with ``stream_users``, the
streams level (:mod:`bench.front_streams`: that many answers streaming at once, paced; Slack's DMs in a second
process with the agent view on), kept apart from the levels above (``streams`` of each door).
"""

from __future__ import annotations

import asyncio
import logging
import pstats
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.front_bot import DOORS, REFERENCES, ROOT, BotProcess, door_env, free_port
from bench.front_driver import FakesProcess, per_answer, records
from bench.front_streams import KINDS, dm_streams, stream_level
from bench.stats import summary_ms

log = logging.getLogger("bench")
TAGS = {"slack_http": "h", "slack_socket": "s", "discord": "d", "baseline": "b", "floor": "f"}
PLUMBING = ("asyncio/", "selectors.py", "threading.py", "bench/bot_proc.py", "runpy.py", "<built-in method select",
            "<built-in method poll", "<built-in method epoll", "{method 'poll'", "{method 'select'")
"""Event-loop plumbing left out of the profile tables (it contains everything, so it says nothing)."""


@dataclass
class FrontConfig:
    users: int = 100
    messages: int = 5
    latencies_ms: list[int] = field(default_factory=lambda: [0, 1000])
    meta_latency_ms: int = 200
    """Latency of the assistant's other calls (create a conversation, check the model), capped at the turn's."""
    solo_messages: int = 200
    """Messages of the one-user level: one conversation, long enough for memory folds and for a CPU reading
    finer than the clock's 10 ms ticks (0.05 ms per answer)."""
    few_users: int = 5
    """Users of the level at the largest latency where new users are compared with returning ones, at low load
    (the first level's new users arrive all at once, the worst case)."""
    baseline_messages: int = 1
    """Measured messages per user for the baseline at latencies above 0 ms: its 5 workers answer 5 a second
    at 1 s, so its level takes ``users * baseline_messages / 5`` seconds."""
    doors: list[str] = field(default_factory=lambda: list(DOORS))
    profile: bool = True
    timeout: float = 60.0
    """Longest wait for one answer before it counts as not answered."""
    top: int = 20
    """Functions per profile table."""
    profile_dir: Path | None = None
    """Where to keep each door's cProfile stats (``<door>.prof``); a temporary directory when unset."""
    stream_users: int = 300
    """Answers streaming at once in the streams level (:mod:`bench.front_streams`); 0: no such level."""
    stream_words: int = 3
    """Words per streamed delta in the streams level..."""
    stream_interval_ms: int = 100
    """...one delta every this many ms, after the turn latency."""
    stream_answer_words: int = 60
    """Words of each answer in the streams level (the echo, then filler)."""
    spread: bool = True
    """The level whose users' first measured messages go out at random over one latency, right after the level of
    all users together at the largest latency, when that is above 0 ms (not for the baseline: its 5 workers
    answer 5 a second at 1 s, whatever the arrivals)."""
    event_loop: str = "auto"
    """``EVENT_LOOP`` of the bot's processes (``asyncio`` measures without uvloop)."""

    @classmethod
    def quick(cls) -> FrontConfig:
        return cls(users=12, messages=2, latencies_ms=[0, 50], meta_latency_ms=20, solo_messages=8, timeout=20.0,
                   top=12, baseline_messages=2, few_users=3, stream_users=6, stream_interval_ms=20,
                   stream_answer_words=10)


def users_throughput(recs: list[dict[str, Any]], timeout: float) -> float:
    """Answers a second of the users together: each user's answers over the time from their first message to
    the end of their last one, summed (what a closed loop of users who do not start together gets done). A
    message never answered counts as answered ``timeout`` after it was sent, and not as an answer."""
    spans: dict[Any, tuple[float, float, int]] = {}
    for r in recs:
        end = r["done"] if r["done"] is not None else r["sent"] + timeout
        first, last, count = spans.get(r["user"], (r["sent"], end, 0))
        spans[r["user"]] = (min(first, r["sent"]), max(last, end), count + (r["done"] is not None))
    return sum(count / (last - first) for first, last, count in spans.values() if last > first)


def summarize(new: dict[str, Any], phase: dict[str, Any], *, users: int, latency_ms: int, cpu_s: float,
              meta_ms: int, timeout: float) -> dict[str, Any]:
    """One level's figures from its two phases (records on the fakes' clock) and the CPU of the measured one."""
    latency = latency_ms / 1000
    recs, fresh = records(phase), records(new)
    done = [r for r in recs if r["done"] is not None]
    answers = len(done)
    wall = (max(r["done"] for r in done) - min(r["sent"] for r in recs)) if done else 0.0
    throughput = answers / wall if wall else 0.0
    # One message a user is no closed loop: its users' "own" rate would leave out the queue they waited in.
    own = users_throughput(recs, timeout) if len(recs) >= 2 * users else None
    ceiling = users / latency if latency else None
    slack, discord, openai = (phase["calls"][k] for k in ("slack", "discord", "openai"))
    visible = [r for r in recs if r["visible"] is not None]
    return {
        "latency_ms": latency_ms,
        "meta_latency_ms": meta_ms,
        "users": users,
        "messages": len(recs),
        "answered": answers,
        "not_answered": len(recs) - answers + sum(r["done"] is None for r in fresh),
        "strays": phase["strays"] + new["strays"],
        "seconds": round(wall, 3),
        "throughput_per_s": round(throughput, 2),
        "ceiling_per_s": round(ceiling, 2) if ceiling else None,
        "of_ceiling": round(throughput / ceiling, 3) if ceiling else None,
        "users_throughput_per_s": round(own, 2) if own is not None else None,
        "users_of_ceiling": round(own / ceiling, 3) if ceiling and own is not None else None,
        "overhead_ms": summary_ms([r["done"] - r["sent"] - latency for r in done]),
        "to_first_token_ms": summary_ms([r["first_output"] - r["sent"] - latency for r in done
                                         if r["first_output"] is not None]),
        "first_token_to_done_ms": summary_ms([r["done"] - r["first_output"] for r in done
                                              if r["first_output"] is not None]),
        "ack_ms": summary_ms([r["acked"] - r["sent"] for r in recs if r["acked"] is not None]),
        "first_token_to_visible_ms": summary_ms([r["visible"] - r["first_output"] for r in visible
                                                 if r["first_output"] is not None]),
        "to_first_text_ms": {
            "returning": summary_ms([r["visible"] - r["sent"] for r in visible]),
            "new": summary_ms([r["visible"] - r["sent"] for r in fresh if r["visible"] is not None]),
        },
        "cpu_ms_per_answer": round(cpu_s * 1000 / answers, 3) if answers else None,
        "cpu_s": round(cpu_s, 3),
        "fakes_cpu_ms_per_answer": round(phase["fakes_cpu_s"] * 1000 / answers, 3) if answers else None,
        "platform_calls_per_answer": per_answer(slack or discord, answers),
        "assistant_calls_per_answer": per_answer(openai, answers),
        "new_users": {
            "answered": sum(r["done"] is not None for r in fresh),
            "platform_calls_per_answer": per_answer(new["calls"]["slack"] or new["calls"]["discord"], len(fresh)),
            "assistant_calls_per_answer": per_answer(new["calls"]["openai"], len(fresh)),
        },
    }


class DoorRun:
    """One door's process and its levels."""

    def __init__(self, fakes: FakesProcess, door: str, cfg: FrontConfig, *, redis_url: str, prefix: str,
                 workdir: Path) -> None:
        self.fakes = fakes
        self.door = door
        self.cfg = cfg
        self.redis_url = redis_url
        self.prefix = f"{prefix}{TAGS[door]}"
        env = door_env(door, fakes.urls, redis_url=redis_url, prefix=self.prefix, port=free_port(),
                       event_loop=cfg.event_loop)
        profiled = cfg.profile and door not in REFERENCES
        self.bot = BotProcess(door, env, profile_out=workdir / f"{door}.prof" if profiled else None)
        self.kind = "dm" if door == "discord" else "mention"
        self._levels = 0

    def _phase(self, tag: str, users: int, first: int, messages: int, spread_s: float = 0.0) -> dict[str, Any]:
        spec = {"door": self.door, "kind": self.kind, "tag": tag, "users": users, "first": first,
                "messages": messages, "timeout": self.cfg.timeout, "url": self.bot.url, "spread": spread_s}
        return dict(self.fakes.call("phase", spec))

    def level(self, users: int, messages: int, latency_ms: int, *, profile: bool = False,
              spread: bool = False) -> dict[str, Any]:
        """``spread``: each user's first measured message goes out at a random moment of one latency."""
        meta_ms = min(self.cfg.meta_latency_ms, latency_ms)
        self.fakes.call("latency", latency_ms / 1000, meta_ms / 1000)
        self._levels += 1
        tag = f"{TAGS[self.door]}{self._levels}"
        new = self._phase(tag, users, 0, 1)
        if profile:
            self.bot.profile(True)
        cpu_before = self.bot.cpu_seconds()
        spread_s = latency_ms / 1000 if spread else 0.0
        measured = self._phase(tag, users, 1, messages, spread_s)
        cpu = self.bot.cpu_seconds() - cpu_before
        if profile:
            self.bot.profile(False)
        out = {"spread_s": spread_s} | summarize(new, measured, users=users, latency_ms=latency_ms, cpu_s=cpu,
                                                 meta_ms=meta_ms, timeout=self.cfg.timeout)
        log.info("front %-12s %5d ms x %3d%s: %7.1f answers/s (%s of ceiling; the users' own %s), overhead p50/p99 "
                 "%.1f/%.1f ms, %.2f CPU ms/answer (fakes and driver %.2f), %s", self.door, latency_ms, users,
                 " spread" if spread else "", out["throughput_per_s"], out["of_ceiling"], out["users_of_ceiling"],
                 out["overhead_ms"].get("p50", 0), out["overhead_ms"].get("p99", 0),
                 out["cpu_ms_per_answer"] or 0, out["fakes_cpu_ms_per_answer"] or 0,
                 out["platform_calls_per_answer"])
        return out

    def _messages(self, latency_ms: int) -> int:
        return self.cfg.baseline_messages if self.door == "baseline" and latency_ms else self.cfg.messages

    def run(self) -> dict[str, Any]:
        before = self.fakes.call("totals")
        self.bot.start()
        try:
            self.fakes.call("ready", self.door)
            started_s = self.bot.started_s
            # The first level's new users arrive together, before the process has answered anything.
            levels = [self.level(self.cfg.users, self._messages(ms), ms) for ms in self.cfg.latencies_ms]
            top = max(self.cfg.latencies_ms)
            if self.cfg.spread and top > 0 and self.door != "baseline":
                levels.append(self.level(self.cfg.users, self.cfg.messages, top, spread=True))
            levels.append(self.level(self.cfg.few_users, self._messages(top), top))
            levels.append(self.level(1, self.cfg.solo_messages, 0))
            profile: dict[str, Any] | None = None
            if self.bot.profile_out is not None:
                latency_ms = max(self.cfg.latencies_ms)
                profiled = self.level(self.cfg.users, self.cfg.messages, latency_ms, profile=True)
                profile = top_functions(self.bot.profile_out, self.cfg.top, answers=profiled["answered"])
                profile.update({"latency_ms": latency_ms, "users": self.cfg.users})
            memory = self.bot.memory_kib()
            kinds = KINDS.get(self.door, ()) if self.cfg.stream_users > 0 else ()
            streams = {kind: stream_level(self.fakes, self.bot, self.cfg, door=self.door, kind=kind,
                                          tag=f"{TAGS[self.door]}s{kind[0]}")
                       for kind in kinds if kind == self.kind}
        finally:
            code = self.bot.stop()
        after = self.fakes.call("totals")
        for kind in kinds:
            if kind not in streams:  # Slack's DMs: the agent view on, in a process of their own
                streams[kind] = dm_streams(self.fakes, self.door, self.cfg, redis_url=self.redis_url,
                                           prefix=self.prefix, tag=f"{TAGS[self.door]}s{kind[0]}")
        stderr = self.bot.stderr()
        slack_before, slack_after = before["slack"], after["slack"]
        return {
            "door": self.door,
            "startup_s": round(started_s, 2),
            "levels": levels,
            "streams": streams,
            "profile": profile,
            "peak_rss_mib": round(memory.get("VmHWM", 0) / 1024, 1),
            "rss_at_end_mib": round(memory.get("VmRSS", 0) / 1024, 1),
            "auth_test_calls": slack_after.get("auth.test", 0) - slack_before.get("auth.test", 0),
            "socket_connections": after["slack_sockets"] - before["slack_sockets"],
            "exit_code": code,
            "stderr_warnings": [line for line in stderr.splitlines() if " WARNING " in line or " ERROR " in line][:20],
        }


def _label(key: tuple[str, int, str]) -> str:
    path, line, name = key
    for marker in ("site-packages/", f"{ROOT}/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = "" if path == "~" else Path(path).name
    return f"{path}:{line}({name})" if path else name


def _package(path: str, name: str) -> str:
    """Where a function's own time goes: a library, one of our packages, the standard library's module."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if path.startswith(f"{ROOT}/"):
        return "/".join(path.removeprefix(f"{ROOT}/").split("/")[:2]).removesuffix(".py")
    if path == "~":
        return "builtins"
    return "stdlib " + "/".join(path.split("/lib/python3.11/", 1)[-1].split("/")[:1]).removesuffix(".py")


def top_functions(path: Path, top: int, *, answers: int) -> dict[str, Any]:
    """The profile's functions by cumulative CPU time (event-loop plumbing left out), and own time by package."""
    stats = pstats.Stats(str(path))
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in table.values())
    rows = []
    packages: dict[str, float] = {}
    for key, (_cc, calls, own, cumulative, _callers) in table.items():
        package = _package(key[0], key[2])
        packages[package] = packages.get(package, 0.0) + own
        if any(mark in f"{key[0]}:{key[2]}" for mark in PLUMBING):
            continue
        rows.append({"function": _label(key), "calls": calls, "own_ms": round(own * 1000, 1),
                     "cumulative_ms": round(cumulative * 1000, 1)})
    rows.sort(key=lambda r: -r["cumulative_ms"])
    by_package = sorted(packages.items(), key=lambda kv: -kv[1])[:top]
    return {"total_cpu_ms": round(total * 1000, 1), "answers": answers,
            "cpu_ms_per_answer": round(total * 1000 / max(1, answers), 3), "top": rows[:top],
            "by_package": [{"package": k, "own_ms": round(v * 1000, 1)} for k, v in by_package]}


async def front_doors(cfg: FrontConfig, *, redis_url: str, prefix: str) -> dict[str, Any]:
    """Every door of ``cfg.doors``, one after another, against one fakes' process."""
    return await asyncio.to_thread(_front_doors, cfg, redis_url, prefix)


def _front_doors(cfg: FrontConfig, redis_url: str, prefix: str) -> dict[str, Any]:
    fakes = FakesProcess()
    fakes.start()
    doors: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="tk-front-prof-") as workdir:
            for door in cfg.doors:
                run = DoorRun(fakes, door, cfg, redis_url=redis_url, prefix=prefix,
                              workdir=cfg.profile_dir or Path(workdir))
                doors[door] = run.run()
    finally:
        fakes.stop()
        _cleanup(redis_url, [f"{prefix}{TAGS[door]}" for door in cfg.doors])
    return {"config": dict(cfg.__dict__), "doors": doors}


def _cleanup(redis_url: str, prefixes: list[str]) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        for name in prefixes:
            batch = list(client.scan_iter(match=f"{name}:*", count=1000))
            for start in range(0, len(batch), 500):
                client.delete(*batch[start : start + 500])
    finally:
        client.close()
