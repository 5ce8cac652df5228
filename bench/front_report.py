"""Markdown tables of the front-door run (:mod:`bench.front_door`): one per door side by side, and the profiles."""

from __future__ import annotations

from typing import Any

NAMES = {"slack_http": "Slack HTTP", "slack_socket": "Slack Socket Mode", "discord": "Discord",
         "baseline": "plain sync Bolt app (HTTP)", "floor": "floor: least wire work (HTTP)"}


def _ms(summary: dict[str, Any]) -> str:
    return f"{summary['p50']:,.1f} / {summary['p99']:,.1f}" if summary.get("n") else "-"


def _level(door: dict[str, Any], latency_ms: int, users: int, *, spread: bool = False) -> dict[str, Any]:
    """The level of that latency and users; ``spread``: the one whose users did not start together."""
    return next((lv for lv in door["levels"] if lv["latency_ms"] == latency_ms and lv["users"] == users
                 and bool(lv.get("spread_s")) == spread), {})


def _calls(per: dict[str, float]) -> str:
    if not per:
        return "-"
    total = sum(per.values())
    parts = ", ".join(f"{k.removeprefix('chat.')} {v:g}" for k, v in per.items())
    return f"{total:g} ({parts})"


def _throughput(lv: dict[str, Any]) -> str:
    """Answers/s over the level's wall time (its share of the ceiling; the users' own share after the slash)."""
    if not lv:
        return "-"
    own = f" / {lv['users_of_ceiling'] * 100:.1f} %" if lv.get("users_of_ceiling") else ""
    share = f" ({lv['of_ceiling'] * 100:.1f} %{own} of {lv['ceiling_per_s']:g})" if lv.get("of_ceiling") else ""
    return f"{lv['throughput_per_s']:,.1f}{share}"


def _own(lv: dict[str, Any]) -> str:
    """The users' own answers/s and share of the ceiling (:func:`bench.front_door.users_throughput`)."""
    if not lv.get("users_of_ceiling"):
        return "-"
    return f"{lv['users_throughput_per_s']:,.1f} ({lv['users_of_ceiling'] * 100:.1f} % of {lv['ceiling_per_s']:g})"


def _cpu(lv: dict[str, Any], key: str) -> str:
    """A CPU figure of the level, "-" where the door has no such level."""
    return f"{lv[key]:.2f}" if lv.get(key) is not None else "-"


def table(front: dict[str, Any]) -> list[str]:
    cfg, doors = front["config"], front["doors"]
    names = [d for d in cfg["doors"] if d in doors]
    users, top = cfg["users"], max(cfg["latencies_ms"])
    lines = [
        "| per answer | " + " | ".join(NAMES.get(d, d) for d in names) + " |",
        "| --- |" + " --- |" * len(names),
    ]

    def row(label: str, cell: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(doors[d]) for d in names) + " |")

    def spread(d: dict[str, Any]) -> dict[str, Any]:
        return _level(d, top, users, spread=True)

    for ms in sorted(cfg["latencies_ms"], reverse=True):
        row(f"answers/s, {users} users, {ms:,} ms assistant (share of users/latency: over the wall time / the "
            "users' own)",
            lambda d, ms=ms: _throughput(_level(d, ms, users)))
    if cfg.get("spread"):
        row(f"the users' own answers/s, {users} users, {top:,} ms, each starting at random within {top:,} ms",
            lambda d: _own(spread(d)))
    for ms in sorted(cfg["latencies_ms"], reverse=True):
        row(f"answer latency minus the assistant's, p50 / p99 ms, {users} users, {ms:,} ms",
            lambda d, ms=ms: _ms(_level(d, ms, users).get("overhead_ms", {})))
    if cfg.get("spread"):
        row(f"answer latency minus the assistant's, p50 / p99 ms, {users} users, {top:,} ms, random starts",
            lambda d: _ms(spread(d).get("overhead_ms", {})))
    row("answer latency minus the assistant's, p50 / p99 ms, 1 user, 0 ms",
        lambda d: _ms(_level(d, 0, 1).get("overhead_ms", {})))
    for ms in sorted(cfg["latencies_ms"], reverse=True):
        row(f"CPU ms of the process per answer, {users} users, {ms:,} ms",
            lambda d, ms=ms: _cpu(_level(d, ms, users), "cpu_ms_per_answer"))
        row(f"CPU ms of the fakes' process per answer (the other side), {users} users, {ms:,} ms",
            lambda d, ms=ms: _cpu(_level(d, ms, users), "fakes_cpu_ms_per_answer"))
    if cfg.get("spread"):
        row(f"CPU ms of the process per answer, {users} users, {top:,} ms, random starts",
            lambda d: _cpu(spread(d), "cpu_ms_per_answer"))
        row(f"CPU ms of the fakes' process per answer, {users} users, {top:,} ms, random starts",
            lambda d: _cpu(spread(d), "fakes_cpu_ms_per_answer"))
    row("CPU ms of the process per answer, 1 user, 0 ms", lambda d: _cpu(_level(d, 0, 1), "cpu_ms_per_answer"))
    row(f"first streamed token -> first text on the platform, p50 / p99 ms, {users} users, {top:,} ms",
        lambda d: _ms(_level(d, top, users).get("first_token_to_visible_ms", {})))
    row("the same, 1 user, 0 ms", lambda d: _ms(_level(d, 0, 1).get("first_token_to_visible_ms", {})))
    row(f"event -> first text, p50 / p99 ms, new users, {users} users, {top:,} ms",
        lambda d: _ms(_level(d, top, users).get("to_first_text_ms", {}).get("new", {})))
    row(f"event -> first text, p50 / p99 ms, returning users, {users} users, {top:,} ms",
        lambda d: _ms(_level(d, top, users).get("to_first_text_ms", {}).get("returning", {})))
    few = cfg.get("few_users", 0)
    row(f"event -> first text, p50 / p99 ms, new users, {few} users, {top:,} ms",
        lambda d: _ms(_level(d, top, few).get("to_first_text_ms", {}).get("new", {})))
    row(f"event -> first text, p50 / p99 ms, returning users, {few} users, {top:,} ms",
        lambda d: _ms(_level(d, top, few).get("to_first_text_ms", {}).get("returning", {})))
    row(f"platform API calls per answer, {users} users, {top:,} ms",
        lambda d: _calls(_level(d, top, users).get("platform_calls_per_answer", {})))
    row(f"assistant calls per answer, {users} users, {top:,} ms",
        lambda d: _calls(_level(d, top, users).get("assistant_calls_per_answer", {})))
    row("event acknowledged (HTTP answer), p50 / p99 ms, 1 user, 0 ms",
        lambda d: _ms(_level(d, 0, 1).get("ack_ms", {})))
    row("`auth.test` calls in the process's life", lambda d: str(d["auth_test_calls"]) if d["door"] != "discord"
        else "-")
    row("peak RSS of the process, MiB", lambda d: f"{d['peak_rss_mib']:,.1f}")
    row("not answered (of all levels)", lambda d: str(sum(lv["not_answered"] for lv in d["levels"])))
    streams = stream_table(front)
    return [*lines, "", *streams] if streams else lines


def _stream_name(door: str, kind: str) -> str:
    if kind == "mention":
        what = "mentions (streamed in the thread)"
    elif door == "discord":
        what = "DMs (posted, then edited)"
    else:
        what = "DMs (agent view on: streamed in a thread of their own)"
    return f"{NAMES.get(door, door)}, {what}"


def stream_table(front: dict[str, Any]) -> list[str]:
    """The streams level (:mod:`bench.front_streams`): one row per door and kind of message."""
    rows = [(name, kind, lv) for name, door in front["doors"].items()
            for kind, lv in (door.get("streams") or {}).items()]
    if not rows:
        return []
    first = rows[0][2]
    lines = [
        f"{first['users']} answers streaming at once: {first['answer_words']} words each, {first['words_per_delta']} "
        f"words every {first['delta_interval_ms']} ms after the assistant's {first['latency_ms']:,} ms (the stream "
        f"itself lasts {first['stream_ms']:,} ms)",
        "",
        "| door, messages | answered | first streamed token -> first text, p50 / p99 ms | first token -> complete "
        "answer, p50 / p99 ms | event -> first text, p50 / p99 ms | CPU ms of the process per answer | platform API "
        "calls per answer | level's wall s / CPU s of the process / of the fakes' |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, kind, lv in rows:
        answered = f"{lv['answered']} of {lv['messages']}" + (f", {lv['strays']} strays" if lv["strays"] else "")
        lines.append(f"| {_stream_name(name, kind)} | {answered} | {_ms(lv['first_token_to_visible_ms'])} "
                     f"| {_ms(lv['first_token_to_done_ms'])} | {_ms(lv['to_first_text_ms'])} "
                     f"| {lv['cpu_ms_per_answer'] or 0:.2f} | {_calls(lv['platform_calls_per_answer'])} "
                     f"| {lv['seconds']:.1f} / {lv['cpu_s']:.2f} / {lv.get('fakes_cpu_s', 0):.2f} |")
    return lines


def profile_tables(front: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, door in front["doors"].items():
        prof = door.get("profile")
        if not prof:
            continue
        lines += [
            f"### {NAMES.get(name, name)}: {prof['users']} users, {prof['latency_ms']:,} ms assistant, "
            f"{prof['answers']} answers, {prof['total_cpu_ms']:,.0f} ms CPU profiled "
            f"({prof['cpu_ms_per_answer']:.1f} ms per answer under the profiler)",
            "",
            "| cumulative CPU ms | per answer ms | own ms | calls | function |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in prof["top"]:
            per = row["cumulative_ms"] / max(1, prof["answers"])
            lines.append(f"| {row['cumulative_ms']:,.1f} | {per:.2f} | {row['own_ms']:,.1f} | {row['calls']:,} "
                         f"| `{row['function']}` |")
        total = max(prof["total_cpu_ms"], 1e-9)
        lines += ["", "| own CPU ms | share | where (library, our package, standard library module) |",
                  "| --- | --- | --- |"]
        lines += [f"| {p['own_ms']:,.1f} | {p['own_ms'] / total * 100:.1f} % | {p['package']} |"
                  for p in prof.get("by_package", [])]
        lines.append("")
    return lines
