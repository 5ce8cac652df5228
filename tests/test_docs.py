"""The operator's documents agree with the code: settings, commands, Procfile, Dockerfile.

``.env.example`` is the one place a setting is described; the README's settings
table is generated from it. After changing ``.env.example``, paste the output of
``python -m tests.test_docs`` between the README's ``settings-table`` markers.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from bot.__main__ import _parser as cli_parser
from bot.config import Settings, load_settings
from bot.ops.admin import _parser as threads_parser
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
README = ROOT / "README.md"
ENV_EXAMPLE = ROOT / ".env.example"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
PROCESS_TYPES = {"web": "slack", "slack": "slack", "discord": "discord", "janitor": "janitor"}
_ASSIGNMENT = re.compile(r"^#([A-Z][A-Z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class Entry:
    section: str
    name: str
    value: str
    """The default as written (quotes removed); empty when the setting is unset by default."""
    description: str


def env_entries() -> list[Entry]:
    """``.env.example``: ``## Section``, then per setting one ``# description`` and one ``#NAME=default``."""
    entries: list[Entry] = []
    section, description = "", ""
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section, description = line[3:].strip(), ""
        elif match := _ASSIGNMENT.match(line):
            assert section and description, f"{match[1]} needs a section and a one-line comment above it"
            value = match[2]
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            entries.append(Entry(section, match[1], value, description))
            description = ""
        elif line.startswith("# ") and section:
            assert not description, f"one comment line per setting: {line!r}"
            description = line[2:].strip()
        else:
            assert not line.strip() or not section, f"unexpected line in .env.example: {line!r}"
    return entries


def render_settings_tables() -> str:
    """The README's settings tables, one per ``.env.example`` section."""
    blocks: list[str] = []
    for entry in env_entries():
        if not blocks or not blocks[-1].startswith(f"#### {entry.section}\n"):
            blocks.append(f"#### {entry.section}\n\n| Variable | Default | What it does |\n|---|---|---|")
        default = f"`{entry.value}`" if entry.value else "unset"
        blocks[-1] += f"\n| `{entry.name}` | {default} | {entry.description} |"
    return "\n\n".join(blocks)


def fields() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def test_env_example_lists_every_setting_once() -> None:
    names = [e.name for e in env_entries()]
    assert len(names) == len(set(names))
    assert set(names) == fields()


def test_env_example_defaults_are_the_real_defaults() -> None:
    for entry in env_entries():
        name = entry.name.lower()
        default = Settings.model_fields[name].default
        if not entry.value:
            assert default in (None, frozenset()), f"{entry.name}: write its default {default!r}"
            continue
        parsed = load_settings(_env_file=None, **{name: entry.value})
        assert getattr(parsed, name) == default, entry.name


def test_env_example_is_a_valid_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commented out, it sets nothing; uncommented (defaults only), it loads and changes nothing."""
    assert dotenv_values(ENV_EXAMPLE) == {}
    for name in fields():
        monkeypatch.delenv(name, raising=False)
    lines = [line[1:] for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
             if _ASSIGNMENT.match(line) and not line.endswith("=")]
    uncommented = tmp_path / ".env"
    uncommented.write_text("\n".join(lines) + "\n", encoding="utf-8")
    loaded = load_settings(_env_file=str(uncommented))
    defaults = load_settings(_env_file=None)
    assert loaded.model_dump() == defaults.model_dump()


def test_readme_settings_table_is_generated_from_env_example() -> None:
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text
    table = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == render_settings_tables(), "regenerate it: python -m tests.test_docs"
    listed = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", table, flags=re.M))
    assert listed == fields()


def test_readme_has_the_newcomer_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "pip install -e . && python -m bot console" in text
    assert 'pip install -e ".[dev]" && python -m pytest' in text
    assert "python -m pytest" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "(bench/README.md)" in text


def bot_commands(text: str) -> list[list[str]]:
    """Every ``python -m bot ...`` in the text, as argv after ``bot``."""
    found = []
    for match in re.finditer(r"python -m bot((?: [^\s`|#&;)]+)*)", text):
        found.append(shlex.split(match[1]))
    return found


def parse(argv: list[str]) -> Any:
    args = cli_parser().parse_args(argv)
    if args.command == "threads":
        threads_parser().parse_args(args.args)
    return args


def test_every_command_in_the_readme_parses() -> None:
    commands = bot_commands(README.read_text(encoding="utf-8"))
    assert {argv[0] for argv in commands} >= {"console", "slack", "discord", "janitor", "threads", "doctor"}
    for argv in commands:
        parse(argv)


def test_procfile_process_types_and_commands() -> None:
    processes: dict[str, str] = {}
    for line in (ROOT / "Procfile").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            processes[name.strip()] = command.strip()
    assert set(processes) == set(PROCESS_TYPES)
    for name, command in processes.items():
        argv = shlex.split(command)
        assert argv[:3] == ["python", "-m", "bot"], command
        assert parse(argv[3:]).command == PROCESS_TYPES[name]


def test_dockerfile_is_slim_and_non_root() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert instructions[-1] == 'CMD ["python", "-m", "bot", "slack"]'
    assert "RUN pip install ." in instructions
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert {".git", ".env", ".venv"} <= set(ignored)


if __name__ == "__main__":
    print(render_settings_tables())
