"""The shipping files agree with each other: the hashed lock, pyproject.toml, the Dockerfile, LICENSE, .python-version.

No network and no Docker here: the lock is read and checked against pyproject's specifiers (``bash .ci/lock``
regenerates it; ``.ci/run`` installs it with ``--require-hashes``), the Dockerfile is parsed instruction by
instruction, and its HEALTHCHECK command is run against a local HTTP server the way Docker would run it.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
LOCK = ROOT / "requirements.txt"
DEV_LOCK = ROOT / "requirements-dev.txt"
DOCKERFILE = ROOT / "Dockerfile"
REGENERATE = "bash .ci/lock"

# The platform the lock is resolved for (.ci/lock: --python-version 3.11 --python-platform x86_64-unknown-linux-gnu).
TARGET_ENV = {
    **default_environment(),
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


# ---- the lock ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pin:
    name: NormalizedName
    version: Version
    hashes: frozenset[str]
    line: str


def logical_lines(path: Path) -> Iterator[str]:
    """The file's lines with backslash continuations joined and comments dropped."""
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            yield full
    assert not pending.strip(), f"{path.name} ends inside a continued line"


def read_lock(path: Path) -> list[Pin]:
    pins = []
    for line in logical_lines(path):
        tokens = line.split()
        options = [token for token in tokens if token.startswith("-")]
        requirement = " ".join(token for token in tokens if not token.startswith("-"))
        assert requirement, f"{path.name}: an option line outside any pin ({line[:80]}): the lock must be machine-free"
        assert all(option.startswith("--hash=") for option in options), f"{path.name}: {line[:120]}"
        parsed = Requirement(requirement)
        assert parsed.url is None, f"{path.name} pins {parsed.name} to a URL"
        specs = list(parsed.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}: {parsed.name} is not pinned with =="
        pins.append(
            Pin(
                canonicalize_name(parsed.name),
                Version(specs[0].version),
                frozenset(option.removeprefix("--hash=") for option in options),
                requirement,
            )
        )
    return pins


def pins_by_name(path: Path) -> dict[NormalizedName, Pin]:
    pins = read_lock(path)
    names = [pin.name for pin in pins]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"{path.name} pins these more than once: {duplicates}"
    return {pin.name: pin for pin in pins}


def applicable(requirements: list[str]) -> list[Requirement]:
    parsed = [Requirement(text) for text in requirements]
    return [req for req in parsed if req.marker is None or req.marker.evaluate(TARGET_ENV)]


def assert_locked(requirements: list[Requirement], lock: Path) -> None:
    pins = pins_by_name(lock)
    stale = f"{lock.name} is out of date with pyproject.toml: run `{REGENERATE}`"
    for req in requirements:
        pin = pins.get(canonicalize_name(req.name))
        assert pin is not None, f"{req} is not pinned in {lock.name}; {stale}"
        assert req.specifier.contains(pin.version, prereleases=True), f"{pin.line} does not satisfy {req}; {stale}"


@pytest.mark.parametrize("lock", [LOCK, DEV_LOCK], ids=lambda path: path.name)
def test_every_line_of_the_lock_is_an_exact_hashed_pin(lock: Path) -> None:
    pins = read_lock(lock)
    assert pins
    for pin in pins:
        assert pin.hashes, f"{lock.name}: {pin.line} has no --hash (pip --require-hashes would refuse the file)"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", digest) for digest in pin.hashes), pin.line


@pytest.mark.parametrize("lock", [LOCK, DEV_LOCK], ids=lambda path: path.name)
def test_the_lock_says_how_to_regenerate_it(lock: Path) -> None:
    header = lock.read_text(encoding="utf-8").splitlines()[:5]
    assert any(line.startswith("#") and REGENERATE in line for line in header), header
    script = ROOT / ".ci" / "lock"
    assert script.is_file() and os.access(script, os.X_OK)
    text = script.read_text(encoding="utf-8")
    assert "--generate-hashes" in text and lock.name in text


def test_runtime_dependencies_are_pinned_in_requirements_txt() -> None:
    assert_locked(applicable(PROJECT["dependencies"]), LOCK)


def test_dev_extra_and_runtime_dependencies_are_pinned_in_requirements_dev_txt() -> None:
    assert_locked(applicable(PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]), DEV_LOCK)


def test_the_dev_lock_carries_the_same_runtime_pins() -> None:
    runtime, dev = pins_by_name(LOCK), pins_by_name(DEV_LOCK)
    for name, pin in runtime.items():
        assert name in dev, f"{name} is in requirements.txt but not in requirements-dev.txt: run `{REGENERATE}`"
        assert (dev[name].version, dev[name].hashes) == (pin.version, pin.hashes), f"{name}: run `{REGENERATE}`"


def test_dev_tools_stay_out_of_the_runtime_lock() -> None:
    runtime_names = {canonicalize_name(req.name) for req in applicable(PROJECT["dependencies"])}
    runtime_pins = pins_by_name(LOCK)
    for req in applicable(PROJECT["optional-dependencies"]["dev"]):
        name = canonicalize_name(req.name)
        if name not in runtime_names:
            assert name not in runtime_pins, f"dev-only {req.name} is in requirements.txt, which production installs"


# ---- the Dockerfile ------------------------------------------------------------------------------------------------
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuations joined, comments dropped."""
    instructions = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        pending = ""
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def copy_sources(arguments: str) -> list[str]:
    parts = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
    parts = [part for part in parts if not part.startswith("--")]
    return parts[:-1]


def dockerignore() -> set[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return {line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")}


def healthcheck_command() -> str:
    checks = [arguments for keyword, arguments in dockerfile() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1, checks
    _options, found, command = checks[0].partition(" CMD ")
    if not found and checks[0].startswith("CMD "):
        command = checks[0].removeprefix("CMD ")
    assert command, f"HEALTHCHECK without CMD: {checks[0]}"
    assert not command.startswith("["), "use the shell form, so ${PORT:-3000} is expanded when the check runs"
    return command


def test_the_image_runs_as_a_non_root_user() -> None:
    users = [arguments.split(":")[0] for keyword, arguments in dockerfile() if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_the_image_installs_the_hashed_lock_then_the_bot_without_dependencies() -> None:
    instructions = dockerfile()
    runs = [(index, arguments) for index, (keyword, arguments) in enumerate(instructions) if keyword == "RUN"]

    def first(predicate: str) -> int:
        return next(index for index, arguments in runs if re.search(predicate, arguments))

    lock_install = first(r"pip install (?=.*--require-hashes)(?=.*-r requirements\.txt)")
    copied_before = [
        source
        for keyword, arguments in instructions[:lock_install]
        if keyword in ("COPY", "ADD")
        for source in copy_sources(arguments)
    ]
    assert "requirements.txt" in copied_before

    project_install = first(r"pip install\b.*\s\.(\s|$)")
    assert lock_install < project_install
    install = instructions[project_install][1]
    no_deps_set = any(
        keyword in ("ARG", "ENV") and re.search(r"\bPIP_NO_DEPS=(1|true|yes|on)\b", arguments)
        for keyword, arguments in instructions[:project_install]
    )
    assert "--no-deps" in install or no_deps_set, "the bot must not pull unpinned dependencies past the lock"
    assert any(re.search(r"\bpip check\b", arguments) for index, arguments in runs if index > project_install)


def test_the_image_copies_neither_tests_nor_bench() -> None:
    ignored = dockerignore()
    sources = [
        source
        for keyword, arguments in dockerfile()
        if keyword in ("COPY", "ADD")
        for source in copy_sources(arguments)
    ]
    assert sources
    for source in sources:
        top = Path(source).parts[0] if Path(source).parts else "."
        assert top not in ("tests", "bench", ".", "*"), f"COPY {source} would put {top} in the image"
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert top not in ignored, f"COPY {source}, but .dockerignore leaves it out of the build context"
    assert {"tests", "bench", ".git", ".venv", ".ci"} <= ignored


def test_the_healthcheck_asks_healthz_on_port_with_python() -> None:
    command = healthcheck_command()
    assert "/healthz" in command and "${PORT:-3000}" in command
    assert command.split()[0] == "python", "slim images have no curl or wget"
    served = [path for path in (ROOT / "adapters").rglob("*.py") if '"/healthz"' in path.read_text(encoding="utf-8")]
    assert served, "no adapter serves /healthz"


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (None, False)])
def test_the_healthcheck_command_passes_only_on_a_200(status: int | None, healthy: bool) -> None:
    handler = type("Handler", (_Health,), {"status": status or 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    if status is None:
        server.server_close()  # nothing listens on the port any more
    else:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**os.environ, "PORT": str(port), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", healthcheck_command()], env=env, capture_output=True, timeout=30, check=False
        )
    finally:
        if status is not None:
            server.shutdown()
            server.server_close()
    assert (done.returncode == 0) is healthy, done.stderr.decode(errors="replace")[-500:]


# ---- licence, Python version, packages -----------------------------------------------------------------------------
def test_the_licence_file_and_pyproject_agree() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Copyright (c) 2026 the threadkeeper authors" in text
    licence = PROJECT["license"]
    assert (licence if isinstance(licence, str) else licence.get("text")) == "MIT"
    assert "LICENSE" in PROJECT.get("license-files", ["LICENSE"])


def test_python_version_file_matches_requires_python_and_the_tools() -> None:
    pinned = (ROOT / ".python-version").read_text(encoding="utf-8").strip()
    assert re.fullmatch(r"3\.\d+", pinned), pinned
    assert SpecifierSet(PROJECT["requires-python"]).contains(pinned)
    assert ("FROM", f"python:{pinned}-slim") in dockerfile()
    assert f"--python-version {pinned}" in (ROOT / ".ci" / "lock").read_text(encoding="utf-8")
    assert PYPROJECT["tool"]["mypy"]["python_version"] == pinned
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py" + pinned.replace(".", "")


SKIP = {"build", "dist", "venv", "node_modules", "__pycache__"}


def discovered_packages() -> set[str]:
    """What setuptools' ``packages.find`` installs: importable directories whose dotted name an include pattern matches.

    The same walk as setuptools' PackageFinder (every directory with ``__init__.py``, matched with ``fnmatchcase``).
    """
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    include, exclude = find.get("include", ["*"]), find.get("exclude", [])
    found = set()
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".") and name not in SKIP]
        relative = Path(directory).relative_to(ROOT)
        if "__init__.py" not in files or not relative.parts:
            continue
        name = ".".join(relative.parts)
        if any(fnmatchcase(name, pattern) for pattern in include) and not any(
            fnmatchcase(name, pattern) for pattern in exclude
        ):
            found.add(name)
    return found


def test_bench_and_tests_are_not_installed_as_packages() -> None:
    packages = discovered_packages()
    assert {"bot", "adapters"} <= packages
    tops = {name.split(".")[0] for name in packages}
    assert tops == {"bot", "adapters"}, tops
    assert (ROOT / "bench" / "__main__.py").is_file(), "python -m bench runs from the repository root"
