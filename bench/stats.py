"""Small statistics helpers shared by the bench modules (no numpy needed)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

CDF_POINTS = (0, 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.9, 100)
"""Percentiles kept in the JSON for each latency distribution (the chart plots them as a CDF)."""


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``samples`` (0 when empty)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(samples: Sequence[float]) -> dict[str, Any]:
    """p50/p90/p99/max/mean in milliseconds, plus the CDF points, from samples in seconds."""
    ms = sorted(s * 1000 for s in samples)
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 3),
        "p90": round(percentile(ms, 90), 3),
        "p99": round(percentile(ms, 99), 3),
        "max": round(ms[-1], 3),
        "mean": round(sum(ms) / len(ms), 3),
        "cdf": [[p, round(percentile(ms, p) if p else ms[0], 3)] for p in CDF_POINTS],
    }


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def ratio(a: float, b: float) -> float | None:
    """``a / b`` rounded, or None when ``b`` is zero."""
    return round(a / b, 2) if b else None
