"""Durations as operators write them: ``30d``, ``12h``, ``90m``, ``45s``.

A number always takes a unit: a bare ``30`` could mean 30 seconds or 30 days,
and reading it as seconds silently turns "a month" into "half a minute".
"""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_BARE = re.compile(r"\d+(?:\.\d+)?")


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> float:
    """Seconds in ``text``, a positive number with a unit; combinations like ``1h30m`` work."""
    raw = text.strip().lower()
    if not raw:
        raise DurationError("empty duration")
    if _BARE.fullmatch(raw):
        if float(raw) <= 0:
            raise DurationError(f"{text!r} must be positive")
        raise DurationError(f'"{raw}" has no unit; write {raw}s, {raw}m, {raw}h or {raw}d')
    pos, total = 0, 0.0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or pos == 0:
        raise DurationError(f"{text!r} is not a duration (use e.g. 30d, 12h, 90m, 45s)")
    if total <= 0:
        raise DurationError(f"{text!r} must be positive")
    return total


def format_duration(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
