"""A PROFILES_FILE for a test: the YAML text written where the test's settings can point at it."""

from __future__ import annotations

from pathlib import Path


def write_profiles(folder: Path, text: str) -> str:
    """``text`` as ``folder/profiles.yml``; returns its path (the value of ``PROFILES_FILE``)."""
    path = folder / "profiles.yml"
    path.write_text(text, encoding="utf-8")
    return str(path)
