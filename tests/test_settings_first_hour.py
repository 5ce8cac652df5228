"""An operator's first hour: the settings mistakes that used to pass silently now stop or warn.

* a duration without a unit (``THREAD_IDLE_TTL=30`` meant 30 seconds, not 30 days) is refused;
* an empty ``OPENAI_MODEL=`` is refused;
* a typo'd key in ``.env`` (``OPENAI_MODLE``) is reported with the closest setting, never its value.

The command-line tests run the real ``python -m bot`` in a subprocess with an
environment built from scratch and, for ``.env``, a temporary working directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings, unknown_env_keys
from bot.durations import DurationError, parse_duration
from tests.support.cli import bot, stderr_lines
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
DURATIONS = ["OPENAI_TIMEOUT", "THREAD_IDLE_TTL", "LOCK_TTL", "DEDUPE_TTL", "JANITOR_INTERVAL", "SHUTDOWN_GRACE"]
KEY_REQUIRED = "configuration error: OPENAI_API_KEY is required for this command but is not set"






def no_unit(name: str, number: str) -> str:
    return f'configuration error: {name}: "{number}" has no unit; write {number}s, {number}m, {number}h or {number}d'


# -- 1. durations take a unit -------------------------------------------------------------------


@pytest.mark.parametrize("name", DURATIONS)
def test_cli_refuses_a_duration_without_a_unit_from_the_environment(name: str, tmp_path: Path) -> None:
    result = bot("doctor", cwd=tmp_path, env={"OPENAI_API_KEY": "sk-test", name: "30"})
    assert result.returncode == 2
    assert stderr_lines(result) == [no_unit(name, "30")]


def test_cli_refuses_a_duration_without_a_unit_from_dotenv(tmp_path: Path) -> None:
    result = bot("console", cwd=tmp_path, env={"OPENAI_API_KEY": "sk-test"}, dotenv="THREAD_IDLE_TTL=30\n")
    assert result.returncode == 2
    assert stderr_lines(result) == [no_unit("THREAD_IDLE_TTL", "30")]


def test_cli_refuses_a_rate_window_without_a_unit(tmp_path: Path) -> None:
    result = bot("doctor", cwd=tmp_path, env={"RATE_LIMIT": "20/10"})
    assert result.returncode == 2
    assert stderr_lines(result) == [no_unit("RATE_LIMIT", "10")]


def test_cli_zero_duration_is_not_positive(tmp_path: Path) -> None:
    """No duration setting has a 0-means-off; 0 stays an error, not a unit hint."""
    result = bot("doctor", cwd=tmp_path, env={"LOCK_TTL": "0"})
    assert result.returncode == 2
    assert stderr_lines(result) == ["configuration error: LOCK_TTL: '0' must be positive"]


def test_cli_accepts_durations_with_units(tmp_path: Path) -> None:
    """Valid durations get past the settings: the next complaint is the missing key."""
    env = {"THREAD_IDLE_TTL": "30d", "LOCK_TTL": "45s", "OPENAI_TIMEOUT": "1m30s", "SHUTDOWN_GRACE": "25s"}
    result = bot("console", cwd=tmp_path, env=env, dotenv="DEDUPE_TTL=2h\nJANITOR_INTERVAL=1h\nRATE_LIMIT=20/10m\n")
    assert result.returncode == 2
    assert stderr_lines(result)[-1:] == [KEY_REQUIRED]


@pytest.mark.parametrize(("text", "number"), [("30", "30"), (" 30 ", "30"), ("1.5", "1.5"), ("86400", "86400")])
def test_bare_number_names_the_units(text: str, number: str) -> None:
    with pytest.raises(DurationError) as err:
        parse_duration(text)
    assert str(err.value) == f'"{number}" has no unit; write {number}s, {number}m, {number}h or {number}d'


@pytest.mark.parametrize("text", ["0", "0.0", "0s", "0d", "inf", "nan", "1e3", "-5", ".5", "30 m"])
def test_other_bad_durations(text: str) -> None:
    with pytest.raises(DurationError) as err:
        parse_duration(text)
    assert "has no unit" not in str(err.value)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("30M", 1800), ("1.5h", 5400), ("2w", 1209600)])
def test_durations_with_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("name", DURATIONS)
def test_every_duration_setting_needs_a_unit(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_env_file=None, **{name.lower(): "30"})
    assert str(err.value) == no_unit(name, "30").removeprefix("configuration error: ")
    assert getattr(load_settings(_env_file=None, **{name.lower(): "30m"}), name.lower()) == 1800


def test_numbers_from_code_are_still_seconds() -> None:
    assert load_settings(_env_file=None, lock_ttl=0.5, thread_idle_ttl=3600).lock_ttl == 0.5


# -- 2. the model cannot be empty ---------------------------------------------------------------


def test_cli_refuses_an_empty_model_in_dotenv(tmp_path: Path) -> None:
    result = bot("doctor", cwd=tmp_path, dotenv="OPENAI_API_KEY=sk-test\nOPENAI_MODEL=\n")
    assert result.returncode == 2
    lines = stderr_lines(result)
    assert len(lines) == 1 and lines[0].startswith("configuration error: OPENAI_MODEL: is empty")


def test_cli_refuses_a_blank_model_in_the_environment(tmp_path: Path) -> None:
    result = bot("console", cwd=tmp_path, env={"OPENAI_API_KEY": "sk-test", "OPENAI_MODEL": "   "})
    assert result.returncode == 2
    assert stderr_lines(result) == [
        "configuration error: OPENAI_MODEL: is empty;"
        " name a model (e.g. gpt-4.1-mini) or leave it unset for the default"
    ]


def test_model_is_trimmed_and_defaults_when_unset() -> None:
    assert load_settings(_env_file=None, openai_model=" gpt-test ").openai_model == "gpt-test"
    assert load_settings(_env_file=None).openai_model == "gpt-4.1-mini"
    with pytest.raises(ConfigError, match=r"^OPENAI_MODEL: "):
        load_settings(_env_file=None, openai_model="")


# -- 3. unknown keys of our namespaces in .env --------------------------------------------------


def test_unknown_env_keys_names_the_closest_setting(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(
        "OPENAI_MODLE=gpt-secret-value\n"
        "openai_model=gpt-test\n"  # settings are case-insensitive: a known key
        "SLACK_BOT_TOKN=xoxb-secret\n"
        "OPNEAI_API_KEY=sk-secret\n"  # outside our namespaces, but a near miss of a whole name
        "DISCORD_SOMETHING_ELSE=1\n"  # in a namespace, nothing close: still reported
        "OPENAI_ORG_ID=org-1\n"  # read by nothing from .env; OPENAI_MODEL would be a wrong hint
        "POSTGRES_PASSWORD=other-tool\n"  # not ours
        "THREAD_IDLE_TTL=30d\n"
        "OPENAI_MODLE=twice\n",
        encoding="utf-8",
    )
    assert unknown_env_keys(path) == [
        ("OPENAI_MODLE", "OPENAI_MODEL"),
        ("SLACK_BOT_TOKN", "SLACK_BOT_TOKEN"),
        ("OPNEAI_API_KEY", "OPENAI_API_KEY"),
        ("DISCORD_SOMETHING_ELSE", None),
        ("OPENAI_ORG_ID", None),
    ]
    assert unknown_env_keys(tmp_path / "missing.env") == []


def test_load_settings_returns_the_warnings_without_values(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("OPENAI_MODLE=gpt-secret-value\nCONTEXT_BUDGE=5000\nLOG_LEVEL=debug\n", encoding="utf-8")
    settings = load_settings(_env_file=str(path))
    assert settings.warnings == [
        f"{path}: unknown setting OPENAI_MODLE (did you mean OPENAI_MODEL?)",
        f"{path}: unknown setting CONTEXT_BUDGE (did you mean CONTEXT_BUDGET?)",
    ]
    assert "secret" not in " ".join(settings.warnings)
    assert settings.openai_model == "gpt-4.1-mini" and settings.log_level == "DEBUG"
    assert load_settings(_env_file=None).warnings == []


def test_default_dotenv_is_the_one_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("REDIS_PREFX=tk2\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_settings().warnings == [".env: unknown setting REDIS_PREFX (did you mean REDIS_PREFIX?)"]


def test_env_example_uncommented_has_no_unknown_keys(tmp_path: Path) -> None:
    lines = [line[1:] for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
             if line.startswith("#") and "=" in line and line[1:2].isupper()]
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert len(lines) > 40
    assert unknown_env_keys(path) == []


def test_cli_with_a_typo_in_dotenv_never_echoes_the_value(tmp_path: Path) -> None:
    result = bot("console", cwd=tmp_path, dotenv="OPENAI_MODLE=gpt-secret-value\n")
    assert result.returncode == 2
    assert stderr_lines(result)[-1] == KEY_REQUIRED
    assert "gpt-secret-value" not in result.stderr + result.stdout


def test_cli_warns_about_a_typo_in_dotenv(tmp_path: Path) -> None:
    """Once ``__main__`` logs ``settings.warnings``: one WARNING line, then the command goes on."""
    result = bot("console", cwd=tmp_path, dotenv="OPENAI_MODLE=gpt-secret-value\n")
    assert result.returncode == 2
    lines = stderr_lines(result)
    assert len(lines) == 2 and lines[1] == KEY_REQUIRED
    assert "WARNING" in lines[0]
    assert lines[0].endswith(".env: unknown setting OPENAI_MODLE (did you mean OPENAI_MODEL?)")
    assert "gpt-secret-value" not in result.stderr + result.stdout
