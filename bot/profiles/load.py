"""Reading and validating ``PROFILES_FILE`` (YAML).

Every mistake is one line naming the profile and the key, e.g.
``PROFILES_FILE: profiles.yml: profiles[1] "support": modle: unknown key (did you mean model?)``.
At start that line is a :class:`~bot.config.ConfigError` (exit code 2); on a reload it is logged and
the last good profiles stay. Secrets never go in the file: MCP headers name environment variables
(``headers_from_env``), read when the file is loaded.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from bot.config import ConfigError, Settings
from bot.profiles.model import PLATFORMS, HostedTool, Match, McpServer, Profile, Profiles, SuggestedPrompt, Tool

TOP_KEYS = ("defaults", "profiles")
SETTING_KEYS = ("model", "instructions", "tools", "temperature", "suggested_prompts")
PROFILE_KEYS = ("name", "match", *SETTING_KEYS)
MATCH_KEYS = ("platform", "workspace", "channel")
MCP_KEYS = ("type", "server_label", "server_url", "allowed_tools", "headers_from_env")
FILE_SEARCH_KEYS = ("type", "vector_store_ids")
HOSTED = ("web_search", "file_search")


class ProfileError(ValueError):
    """One mistake in the file: ``<where>: <key>: <problem>`` (without the file's name)."""


def _unknown(key: object, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(key), known, n=1)
    if key == "headers":
        return "unknown key (secrets stay out of the file: name environment variables in headers_from_env)"
    return "unknown key" + (f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(known)})")


def _mapping(value: object, where: str, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: must be a mapping (key: value lines)")
    for key in value:
        if key not in known:
            raise ProfileError(f"{where}: {key}: {_unknown(key, known)}")
    return {str(k): v for k, v in value.items()}


def _text(value: object, where: str, *, numbers: bool = False) -> str:
    """A non-empty string; with ``numbers``, an unquoted integer too (a Discord id written without quotes)."""
    if isinstance(value, bool) or not isinstance(value, str | int) or (isinstance(value, int) and not numbers):
        raise ProfileError(f"{where}: must be a string")
    text = str(value).strip()
    if not text:
        raise ProfileError(f"{where}: is empty")
    return text


def _texts(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ProfileError(f"{where}: must be a list")
    return tuple(_text(v, f"{where}[{i}]") for i, v in enumerate(value))


def _instructions(value: object, where: str, folder: Path) -> str:
    text = _text(value, where)
    if not text.startswith("@"):
        return text
    path = (folder / text[1:]).expanduser()
    try:
        read = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ProfileError(f"{where}: cannot read {path}: {reason}") from None
    if not read:
        raise ProfileError(f"{where}: {path} is empty")
    return read


def _temperature(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProfileError(f"{where}: must be a number")
    if not 0 <= value <= 2:
        raise ProfileError(f"{where}: must be between 0 and 2")
    return float(value)


def _mcp(raw: dict[str, Any], where: str, env: Mapping[str, str]) -> McpServer:
    label = _text(raw.get("server_label"), f"{where}: server_label")
    url = _text(raw.get("server_url"), f"{where}: server_url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProfileError(f"{where}: server_url: must be an http(s) URL")
    if parts.username or parts.password:
        raise ProfileError(f"{where}: server_url: must not carry credentials (use headers_from_env)")
    allowed = _texts(raw.get("allowed_tools", []), f"{where}: allowed_tools")
    envs = raw.get("headers_from_env", {})
    if not isinstance(envs, dict):
        raise ProfileError(f"{where}: headers_from_env: must be a mapping (header: ENV_VARIABLE)")
    header_envs: list[tuple[str, str]] = []
    headers: list[tuple[str, str]] = []
    for header, name in envs.items():
        variable = _text(name, f"{where}: headers_from_env: {header}")
        value = env.get(variable, "").strip()
        if not value:
            raise ProfileError(f"{where}: headers_from_env: {header}: the environment variable {variable} is not set")
        header_envs.append((str(header), variable))
        headers.append((str(header), value))
    return McpServer(label, url, allowed, tuple(header_envs), tuple(headers))


def _tool(value: object, where: str, env: Mapping[str, str]) -> Tool:
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: must be a tool name (web_search) or a mapping with a type")
    kind = value.get("type")
    if kind == "mcp":
        return _mcp(_mapping(value, where, MCP_KEYS), where, env)
    if kind == "web_search":
        _mapping(value, where, ("type",))
        return HostedTool("web_search")
    if kind == "file_search":
        raw = _mapping(value, where, FILE_SEARCH_KEYS)
        ids = _texts(raw.get("vector_store_ids", []), f"{where}: vector_store_ids")
        if not ids:
            raise ProfileError(f"{where}: vector_store_ids: file_search needs at least one vector store id")
        return HostedTool("file_search", ids)
    raise ProfileError(f"{where}: type: unknown tool {kind!r} (known: web_search, file_search, mcp)")


def _settings(raw: dict[str, Any], where: str, base: Profile, folder: Path, env: Mapping[str, str]) -> Profile:
    """``base`` with what ``raw`` sets (the profile's own keys win; tools replace, never add up)."""
    model, instructions, tools = base.model, base.instructions, base.tools
    temperature, prompts = base.temperature, base.suggested_prompts
    if "model" in raw:
        model = _text(raw["model"], f"{where}: model")
    if "instructions" in raw:
        instructions = _instructions(raw["instructions"], f"{where}: instructions", folder)
    if "tools" in raw:
        if not isinstance(raw["tools"], list):
            raise ProfileError(f"{where}: tools: must be a list")
        tools = tuple(_tool(t, f"{where}: tools[{i}]", env) for i, t in enumerate(raw["tools"]))
        labels = [t.label for t in tools]
        if len(set(labels)) != len(labels):
            raise ProfileError(f"{where}: tools: a tool or MCP server_label is listed twice")
    if "temperature" in raw:
        temperature = None if raw["temperature"] is None else _temperature(raw["temperature"], f"{where}: temperature")
    if "suggested_prompts" in raw:
        items = raw["suggested_prompts"]
        if not isinstance(items, list):
            raise ProfileError(f"{where}: suggested_prompts: must be a list of {{title, message}}")
        prompts = tuple(_prompt(p, f"{where}: suggested_prompts[{i}]") for i, p in enumerate(items))
    return Profile(model, instructions, tools, temperature, prompts, base.name)


def _prompt(value: object, where: str) -> SuggestedPrompt:
    raw = _mapping(value, where, ("title", "message"))
    return SuggestedPrompt(_text(raw.get("title"), f"{where}: title"), _text(raw.get("message"), f"{where}: message"))


def _match(value: object, where: str) -> Match:
    raw = _mapping(value, f"{where}: match", MATCH_KEYS)
    given = {k: _text(v, f"{where}: match: {k}", numbers=True) for k, v in raw.items()}
    platform = given.get("platform")
    if platform is not None and platform not in PLATFORMS:
        raise ProfileError(f"{where}: match: platform: {platform!r} is none of {', '.join(sorted(PLATFORMS))}")
    return Match(platform, given.get("workspace"), given.get("channel"))


def parse_profiles(text: str, *, base: Profile, folder: Path, env: Mapping[str, str], backend: str = "conversations",
                   source: str = "") -> Profiles:
    """The profiles in ``text`` on top of ``base`` (the settings' model and instructions)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ProfileError(f"not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    top = _mapping({} if data is None else data, "the file", TOP_KEYS)
    defaults = _settings(_mapping(top.get("defaults") or {}, "defaults", SETTING_KEYS), "defaults", base,
                         folder, env)
    listed = top.get("profiles") or []
    if not isinstance(listed, list):
        raise ProfileError("profiles: must be a list")
    rules: list[tuple[Match, Profile]] = []
    seen: dict[Match, str] = {}
    for index, item in enumerate(listed):
        where = f"profiles[{index}]"
        name = item.get("name") if isinstance(item, dict) else None
        if name is not None:
            where += f" {_text(name, where + ': name')!r}"  # named in every line about this profile
        raw = _mapping(item, where, PROFILE_KEYS)
        if "match" not in raw:
            raise ProfileError(f"{where}: match: missing (name a platform, workspace and/or channel)")
        match = _match(raw["match"], where)
        if match in seen:
            raise ProfileError(f"{where}: match: the same as {seen[match]}, so it could never apply")
        seen[match] = where
        profile = _settings(raw, where, defaults, folder, env)
        rules.append((match, Profile(profile.model, profile.instructions, profile.tools, profile.temperature,
                                     profile.suggested_prompts, where)))
    profiles = Profiles(defaults, tuple(rules), source)
    if backend == "chat":
        for where, profile in (("defaults", defaults), *((p.name, p) for _, p in rules)):
            if profile.tools:
                raise ProfileError(f"{where}: tools: the chat backend (ASSISTANT_BACKEND=chat) has no hosted tools; "
                                   "remove them or use ASSISTANT_BACKEND=conversations")
    return profiles


def base_profile(settings: Settings) -> Profile:
    return Profile(settings.openai_model, settings.assistant_instructions)


def read_profiles(path: str | os.PathLike[str], settings: Settings, env: Mapping[str, str] | None = None) -> Profiles:
    """Read and validate the file at ``path``; one-line :class:`ProfileError` on any mistake (I/O included)."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ProfileError(f"cannot read the file: {reason}") from None
    return parse_profiles(text, base=base_profile(settings), folder=file.parent, env=os.environ if env is None else env,
                          backend=settings.assistant_backend, source=str(file))


def load_profiles(settings: Settings) -> Profiles:
    """The configured profiles (only the settings' defaults without ``PROFILES_FILE``), or :class:`ConfigError`."""
    if not settings.profiles_file:
        return Profiles(base_profile(settings))
    try:
        return read_profiles(settings.profiles_file, settings)
    except ProfileError as exc:
        raise ConfigError(f"PROFILES_FILE: {settings.profiles_file}: {exc}") from None
