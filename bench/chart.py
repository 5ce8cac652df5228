"""The bench's PNG: overhead distribution, throughput and in-flight answers against concurrency,
and input tokens per turn of the long conversation. Rendered from the results dict alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: no display here

import matplotlib.pyplot as plt

OURS = ("tab:blue", "tab:green", "tab:purple", "tab:cyan")
"""threadkeeper's colour per latency (in config order); baselines are red and orange."""
BASELINE_STYLE = {"lazy_check": ("tab:red", "lazy check"), "fail_fast": ("tab:orange", "fail fast")}
LONG_STYLE = {
    "conversations_auto": ("tab:blue", "conversations, truncation=auto"),
    "conversations_rollover": ("tab:purple", "conversations, roll-over on context_length_exceeded"),
    "chat_budget": ("tab:green", "chat, CONTEXT_BUDGET"),
    "unbounded": ("tab:gray", "unbounded (no context limit)"),
}


def _cdf(ax: Any, summary: dict[str, Any], **style: Any) -> None:
    points = summary.get("cdf") or []
    if points:
        ax.plot([max(v, 1e-3) for _, v in points], [p for p, _ in points], **style)


def _overhead(ax: Any, results: dict[str, Any]) -> None:
    core = results["core"]["levels"]
    top = max((lv["concurrency"] for lv in core), default=0)
    colours = dict(zip(results["config"]["latencies_ms"], OURS, strict=False))
    for lv in core:
        if lv["concurrency"] in (1, top):
            _cdf(ax, lv["overhead_ms"], color=colours.get(lv["latency_ms"], "black"), marker=".",
                 linestyle="-" if lv["concurrency"] == 1 else ":",
                 label=f"threadkeeper {lv['latency_ms']:,} ms x {lv['concurrency']:,}")
    for name, (colour, label) in BASELINE_STYLE.items():
        for lv in results["baselines"][name]["levels"]:
            _cdf(ax, lv["overhead_ms"], color=colour, linestyle="-" if lv["latency_ms"] == 0 else "--",
                 label=f"{label} {lv['latency_ms']:,} ms")
    ax.set_xscale("log")
    ax.set_xlabel("overhead per message, ms (total minus the assistant's latency; log)")
    ax.set_ylabel("percentile")
    ax.set_title("Overhead distribution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def _by_concurrency(ax: Any, results: dict[str, Any], key: str, title: str, ylabel: str) -> None:
    levels = results["core"]["levels"]
    for n, latency in enumerate(results["config"]["latencies_ms"]):
        mine = sorted((lv for lv in levels if lv["latency_ms"] == latency), key=lambda lv: lv["concurrency"])
        ax.plot([lv["concurrency"] for lv in mine], [max(lv[key], 1e-2) for lv in mine], color=OURS[n % len(OURS)],
                marker="os^v"[n % 4], linestyle="-" if latency == 0 else "--", label=f"threadkeeper, {latency:,} ms")
        xs = [mine[0]["concurrency"], mine[-1]["concurrency"]] if mine else [1, 1]
        for name, (colour, label) in BASELINE_STYLE.items():
            for lv in results["baselines"][name]["levels"]:
                if lv["latency_ms"] == latency:
                    ax.plot(xs, [max(lv[key], 1e-2)] * 2, color=colour,
                            linestyle="-" if latency == 0 else "--", label=f"{label}, {latency:,} ms (10 workers)")
    for variant, marker in zip(results["core"].get("variants") or [], "XP*", strict=False):
        lv = variant["level"]
        failed = sum(lv["errors"].values())
        note = f", {failed:,} of {lv['messages']:,} failed" if failed else ""
        ax.plot([lv["concurrency"]], [max(lv[key], 1e-2)], marker=marker, markersize=10, linestyle="none",
                color="black" if failed else "tab:olive", label=f"{variant['name']}{note}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent conversations (log)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6)


def _long(ax: Any, results: dict[str, Any]) -> None:
    lc = results["long_conversation"]
    for name, (colour, label) in LONG_STYLE.items():
        series = lc.get(name)
        if series:
            tokens = series["input_tokens"]
            ax.plot(range(1, len(tokens) + 1), tokens, color=colour, label=label, linewidth=1.2)
    ax.set_xlabel("turn")
    ax.set_ylabel("input tokens billed for the turn")
    ax.set_title(f"Long conversation ({lc['context_limit_items']} items in context; budget {lc['context_budget']})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def render_chart(results: dict[str, Any], path: Path) -> Path:
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    _overhead(axes[0][0], results)
    _by_concurrency(axes[0][1], results, "throughput_per_s", "Throughput", "answers per second (log)")
    _by_concurrency(axes[1][0], results, "in_flight_peak", "Answers in flight (peak)", "in flight (log)")
    _long(axes[1][1], results)
    fig.suptitle(f"threadkeeper bench, {results['generated']} ({results['machine']['cpus']} CPUs)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
