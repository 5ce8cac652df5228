"""Settings: validated once, one line naming the variable, exit code 2, no secrets echoed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from bot.durations import DurationError, format_duration, parse_duration
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 2592000), ("12h", 43200), ("90m", 5400), ("45s", 45), ("1h30m", 5400), ("10s", 10)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5m", "0", "5m3"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for seconds in (45.0, 5400.0, 86400.0 * 30):
        assert parse_duration(format_duration(seconds)) == seconds


def test_bad_setting_names_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_env_file=None, thread_idle_ttl="soon")
    assert str(err.value).startswith("THREAD_IDLE_TTL:")
    with pytest.raises(ConfigError) as err:
        load_settings(_env_file=None, rate_limit="lots")
    assert str(err.value).startswith("RATE_LIMIT:")


def test_instructions_from_file(tmp_path: Path) -> None:
    path = tmp_path / "prompt.txt"
    path.write_text("Be brief.\n", encoding="utf-8")
    assert load_settings(_env_file=None, assistant_instructions=f"@{path}").assistant_instructions == "Be brief."
    with pytest.raises(ConfigError) as err:
        load_settings(_env_file=None, assistant_instructions=f"@{tmp_path}/missing.txt")
    assert str(err.value).startswith("ASSISTANT_INSTRUCTIONS:")


def test_cluster_scheme_sets_the_flag() -> None:
    settings = load_settings(_env_file=None, redis_url="redis+cluster://127.0.0.1:7000")
    assert settings.redis_cluster and settings.redis_url == "redis://127.0.0.1:7000"


def _cli(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "DISCORD_", "REDIS_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=ROOT,
        timeout=60,
    )


def test_cli_bad_value_is_one_line_and_exit_2() -> None:
    result = _cli("console", env={"OPENAI_API_KEY": "sk-secretsecretsecret", "THREAD_IDLE_TTL": "forever"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "THREAD_IDLE_TTL" in lines[0]
    assert "secretsecret" not in result.stderr + result.stdout


def test_cli_missing_key_is_one_line_and_exit_2() -> None:
    result = _cli("console", env={})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: OPENAI_API_KEY is required for this command but is not set"
    ]
