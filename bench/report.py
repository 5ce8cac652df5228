"""Ratios and Markdown tables from a results dict (what ``python -m bench`` prints)."""

from __future__ import annotations

from typing import Any

from bench.stats import ratio

PATTERNS = ("lazy_check", "fail_fast")
CORE_PART = {"happy": "happy_path", "recovery": "recovery", "first": "first_message"}
"""Baseline part name -> the core's."""


def _level(levels: list[dict[str, Any]], latency_ms: int, concurrency: int | None = None) -> dict[str, Any]:
    found = [lv for lv in levels if lv["latency_ms"] == latency_ms]
    if concurrency is not None:
        found = [lv for lv in found if lv.get("concurrency") == concurrency] or found
    return max(found, key=lambda lv: lv.get("concurrency", 0)) if found else {}


def comparison(results: dict[str, Any]) -> dict[str, Any]:
    """Ours against each baseline at each latency (ours at the largest concurrency)."""
    core, base = results["core"], results["baselines"]
    out: dict[str, Any] = {}
    for latency in results["config"]["latencies_ms"]:
        ours = _level(core["levels"], latency)
        row: dict[str, Any] = {
            "concurrency": ours.get("concurrency"),
            "throughput_per_s": ours.get("throughput_per_s"),
            "in_flight_peak": ours.get("in_flight_peak"),
        }
        for name in PATTERNS:
            theirs = _level(base[name]["levels"], latency)
            row[name] = {
                "throughput_per_s": theirs.get("throughput_per_s"),
                "in_flight_peak": theirs.get("in_flight_peak"),
                "throughput_ratio": ratio(ours.get("throughput_per_s", 0), theirs.get("throughput_per_s", 0)),
                "in_flight_ratio": ratio(ours.get("in_flight_peak", 0), theirs.get("in_flight_peak", 0)),
            }
        out[f"{latency}ms"] = row
    return out


def _ms(summary: dict[str, Any]) -> str:
    if not summary.get("n"):
        return "-"
    return f"{summary['p50']:.2f} / {summary['p99']:.2f} / {summary['max']:.2f}"


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def headline(results: dict[str, Any]) -> list[str]:
    core, base, cmp = results["core"], results["baselines"], results["comparison"]
    lazy, fast = base["lazy_check"], base["fail_fast"]
    lines = [
        "| per message | threadkeeper core | lazy check | fail fast (article) |",
        "| --- | --- | --- | --- |",
    ]

    def counts(label: str, part: str, key: str) -> None:
        ours = core[CORE_PART[part]][key]
        lines.append(f"| {label} | {_num(ours)} | {_num(lazy[part][key])} | {_num(fast[part][key])} |")

    counts("assistant HTTP calls, happy path", "happy", "assistant_calls_per_message")
    counts("assistant HTTP calls, after the thread was deleted", "recovery", "assistant_calls_per_message")
    counts("assistant HTTP calls, user's first message", "first", "assistant_calls_per_message")
    counts("Redis round trips, happy path", "happy", "redis_round_trips_per_message")
    counts("Redis round trips, after the thread was deleted", "recovery", "redis_round_trips_per_message")
    top = max(results["config"]["concurrency"])
    for latency in results["config"]["latencies_ms"]:
        lz, ff = _level(lazy["levels"], latency), _level(fast["levels"], latency)
        for c in sorted({1, top}):
            ours = _level(core["levels"], latency, c)
            lines.append(
                f"| overhead p50 / p99 / max, ms, at {latency:,} ms, {c:,} conversation{'s' if c > 1 else ''} "
                f"(baselines: 10 workers) | {_ms(ours.get('overhead_ms', {}))} "
                f"| {_ms(lz.get('overhead_ms', {}))} | {_ms(ff.get('overhead_ms', {}))} |"
            )
            lines.append(
                f"| of which in our process (not waiting for the server), at {latency:,} ms, {c:,} "
                f"| {_ms(ours.get('own_ms', {}))} | - | - |"
            )
        row = cmp[f"{latency}ms"]
        lines.append(
            f"| throughput, msg/s, at {latency:,} ms | {_num(row['throughput_per_s'], 1)} "
            f"| {_num(row['lazy_check']['throughput_per_s'], 1)} (x{_num(row['lazy_check']['throughput_ratio'])}) "
            f"| {_num(row['fail_fast']['throughput_per_s'], 1)} (x{_num(row['fail_fast']['throughput_ratio'])}) |"
        )
        lines.append(
            f"| answers in flight (peak) at {latency:,} ms | {_num(row['in_flight_peak'])} "
            f"| {_num(row['lazy_check']['in_flight_peak'])} | {_num(row['fail_fast']['in_flight_peak'])} |"
        )
    for probe in core.get("memory", []):
        lines.append(
            f"| memory per answer in flight, Python heap ({probe['method']}, {probe['in_flight']:,} in flight) "
            f"| {_num(probe['kib_per_in_flight'], 1)} KiB | - | - |"
        )
    first_top = next((lv for lv in core["levels"] if lv["concurrency"] == top), None)
    if first_top and first_top["in_flight_peak"]:
        per = first_top["rss_growth_mb"] * 1024 / first_top["in_flight_peak"]
        lines.append(
            f"| memory per answer in flight, RSS growth (first time {first_top['in_flight_peak']:,} were in flight, "
            f"pools included) | {per:,.1f} KiB | - | - |"
        )
    lines.append("")
    lines.append("(xN) = threadkeeper's throughput divided by that baseline's.")
    return lines


def sweep(results: dict[str, Any]) -> list[str]:
    lines = [
        "| assistant latency | conversations | messages | msg/s | in flight peak / mean "
        "| overhead p50 / p99 / max ms | in our process p50 / p99 / max ms | calls/msg | Redis RT/msg | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for lv in results["core"]["levels"]:
        errors = sum(lv["errors"].values())
        lines.append(
            f"| {lv['latency_ms']:,} ms | {lv['concurrency']:,} | {lv['messages']:,} | {lv['throughput_per_s']:,.1f} "
            f"| {lv['in_flight_peak']:,} / {lv['in_flight_mean']:,.0f} | {_ms(lv['overhead_ms'])} "
            f"| {_ms(lv['own_ms'])} | {_num(lv['assistant_calls_per_message'])} "
            f"| {_num(lv['redis_round_trips_per_message'])} | {errors} |"
        )
    return lines


def long_table(results: dict[str, Any]) -> list[str]:
    lc = results["long_conversation"]
    lines = [
        f"Long conversation: {lc['turns']} turns; fake context limit {lc['context_limit_items']} items; "
        f"CONTEXT_BUDGET {lc['context_budget']} tokens.",
        "",
        "| series | input tokens, peak | second half min - max | threads used | memory tokens per turn | errors |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("conversations_auto", "conversations_rollover", "chat_budget", "unbounded", "conversations_memory"):
        s = lc.get(name)
        if s:
            lines.append(
                f"| {name} | {s['peak']:,} | {s['last_half_min']:,} - {s['last_half_max']:,} "
                f"| {s['threads_used']} | {s.get('memory_tokens_per_turn', '-')} | {s['errors']} |"
            )
    return lines


def variants(results: dict[str, Any]) -> list[str]:
    rows = results["core"].get("variants") or []
    if not rows:
        return []
    lines = [
        "| client set-up, at the largest latency and concurrency | msg/s | in flight peak / mean "
        "| overhead p50 / p99 / max ms | errors |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lv = row["level"]
        lines.append(
            f"| {row['name']} | {lv['throughput_per_s']:,.1f} | {lv['in_flight_peak']:,} / {lv['in_flight_mean']:,.0f} "
            f"| {_ms(lv['overhead_ms'])} | {sum(lv['errors'].values()):,} of {lv['messages']:,} |"
        )
    return lines


def limits_table(results: dict[str, Any]) -> list[str]:
    pl = results.get("platform_limits")
    if not pl:
        return []
    limit = pl["limit"]
    lines = [
        f"Under Slack's rate limits: every chat method {limit['burst']} calls at once, then "
        f"{_num(limit['per_second'])} a second per workspace (posts also 1 a second per channel).",
        "",
        "| run | answers at once | last answer complete, s | p50 / p90 answer end, s | budget bound, s "
        "| refused (by method) | calls through | complete | early retries | posted twice |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in pl["runs"]:
        end = run["answer_end_ms"]
        spread = f"{end['p50'] / 1000:.2f} / {end['p90'] / 1000:.2f}" if end.get("n") else "-"
        by_method = ", ".join(f"{m.removeprefix('chat.')} {n}" for m, n in sorted(run["refused_by_method"].items()))
        lines.append(
            f"| {run['name']} | {run['answers']:,} | {_num(run['last_answer_s'])} | {spread} "
            f"| {_num(run['budget_bound_s'])} | {run['refused']:,}{f' ({by_method})' if by_method else ''} "
            f"| {sum(run['calls_by_method'].values()):,} | {run['complete']:,} | {run['early_retries']} "
            f"| {run['duplicate_posts']} |"
        )
    return lines


def render(results: dict[str, Any]) -> str:
    parts = [*headline(results), "", *sweep(results), "", *variants(results), "", *long_table(results), "",
             *limits_table(results)]
    return "\n".join(parts)
