"""Settings from the environment (and ``.env``), validated once at start.

A wrong value fails with one line naming the variable (exit code 2 from the
CLI); secret values are never echoed back. A key in ``.env`` that looks like one
of ours but is none (a typo) is reported in :attr:`Settings.warnings`.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv.parser import parse_stream
from pydantic import BeforeValidator, Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.sources import ENV_FILE_SENTINEL

from bot.durations import DurationError, parse_duration
from bot.safety import parse_patterns

DEFAULT_INSTRUCTIONS = (
    "You are a helpful assistant in a team chat. Answer clearly and concisely; "
    "use Markdown for code and lists."
)


EventLoopChoice = Literal["auto", "uvloop", "asyncio"]
"""``EVENT_LOOP``: which event loop the serving commands run on (:mod:`bot.ops.event_loop`)."""


class ConfigError(Exception):
    """One line for the operator, naming the variable at fault."""


def _duration(value: Any) -> float:
    """A number from code is seconds; text (the environment, ``.env``) must carry a unit."""
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError("must be positive")
        return float(value)
    try:
        return parse_duration(str(value))
    except DurationError as exc:
        raise ValueError(str(exc)) from None


def _csv(value: Any) -> frozenset[str]:
    if value is None or value == "":
        return frozenset()
    if isinstance(value, str):
        return frozenset(p.strip() for p in value.split(",") if p.strip())
    return frozenset(str(v) for v in value)


Duration = Annotated[float, BeforeValidator(_duration)]
CsvSet = Annotated[frozenset[str], NoDecode, BeforeValidator(_csv)]

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")


def parse_rate(text: str) -> tuple[int, float]:
    """``20/10m`` -> (20, 600.0)."""
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a rate (use e.g. 20/10m)")
    count = int(match.group(1))
    if count <= 0:
        raise ValueError("the count must be positive")
    return count, parse_duration(match.group(2))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")
    _warnings: list[str] = PrivateAttr(default_factory=list)

    # Assistant
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4.1-mini"
    openai_timeout: Duration = 60.0
    openai_max_retries: int = Field(2, ge=0, le=10)
    openai_max_connections: int = Field(1000, ge=1)
    assistant_backend: Literal["conversations", "chat"] = "conversations"
    assistant_instructions: str = DEFAULT_INSTRUCTIONS
    assistant_vision: Literal["auto", "on", "off"] = "auto"

    # Store
    redis_url: str | None = None
    redis_prefix: str = Field("tk", pattern=r"^[A-Za-z0-9_.-]+$")
    redis_cluster: bool = False
    redis_max_connections: int = Field(100, ge=2)
    thread_idle_ttl: Duration = 30 * 86400.0
    keep_turns: int = Field(10, ge=0, le=20)
    lock_ttl: Duration = 30.0
    dedupe_ttl: Annotated[float, BeforeValidator(_duration), Field(ge=600)] = 3600.0
    thread_scope: Literal["shared", "user", "thread", "channel"] = "shared"
    thread_context_messages: int = Field(30, ge=0, le=1000)

    # Limits
    rate_limit: str | None = None
    max_input_chars: int = Field(8000, ge=1)
    max_file_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_files_per_message: int = Field(5, ge=0, le=20)
    user_daily_tokens: int = Field(0, ge=0)
    allowed_slack_teams: CsvSet = frozenset()
    allowed_slack_channels: CsvSet = frozenset()
    allowed_discord_guilds: CsvSet = frozenset()
    allowed_discord_channels: CsvSet = frozenset()

    # Long conversations
    context_truncation: Literal["auto", "disabled"] = "auto"
    context_summary: bool = False
    context_compact_threshold: int = Field(0, ge=0)
    context_budget: int = Field(12000, ge=256)

    # Memory across lost conversations
    memory: Literal["off", "summary"] = "summary"
    memory_max_tokens: int = Field(400, ge=50, le=4000)
    memory_fold_every: int = Field(10, ge=2, le=200)

    # Profiles and safety
    profiles_file: str | None = None
    moderation: Literal["off", "input", "both"] = "off"
    moderation_model: str = "omni-moderation-latest"
    redact_patterns: str | None = None
    tool_approval_timeout: Annotated[float, BeforeValidator(_duration), Field(gt=0, le=600)] = 120.0

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str | None = None
    port: int = Field(3000, ge=1, le=65535)
    slack_follow_ups: bool = True
    slack_agent_view: bool = True
    """The app uses the shipped manifest's ``agent_view``: each top-level DM is answered in a thread of its own,
    titled, with the loading status in channel threads too. Off for an app still on ``assistant_view`` (top-level
    DMs answered at the top level; a WARNING if agent events arrive while it is off)."""
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    slack_redirect_uri: str | None = None
    token_encryption_key: SecretStr | None = None

    # Discord
    discord_token: SecretStr | None = None
    discord_api_base: str | None = None
    discord_channels: CsvSet = frozenset()
    discord_dev_guild: str | None = None
    discord_open_threads: bool = False
    discord_channel_context: int = Field(0, ge=0, le=100)
    discord_shard_count: int | None = Field(None, ge=1)
    discord_shard_ids: CsvSet = frozenset()

    # Operations
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    metrics_port: int = Field(0, ge=0, le=65535)
    janitor_interval: Duration | None = None
    shutdown_grace: Duration = 25.0
    event_loop: EventLoopChoice = "auto"

    @field_validator("assistant_instructions")
    @classmethod
    def _instructions(cls, value: str) -> str:
        if value.startswith("@"):
            path = Path(value[1:]).expanduser()
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"cannot read instructions file {path}: {exc.strerror}") from None
        return value

    @field_validator("openai_model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not value.strip():
            default = cls.model_fields["openai_model"].default
            raise ValueError(f"is empty; name a model (e.g. {default}) or leave it unset for the default")
        return value.strip()

    @field_validator("redact_patterns")
    @classmethod
    def _redactions(cls, value: str | None) -> str | None:
        parse_patterns(value)
        return value or None

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value:
            parse_rate(value)
        return value or None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _cluster_scheme(self) -> Settings:
        if self.redis_url and self.redis_url.startswith("redis+cluster://"):
            self.redis_url = "redis://" + self.redis_url[len("redis+cluster://") :]
            self.redis_cluster = True
        return self

    @property
    def warnings(self) -> list[str]:
        """One line per suspicious ``.env`` key, for the caller to log once logging is set up."""
        return self._warnings

    @property
    def rate(self) -> tuple[int, float] | None:
        return parse_rate(self.rate_limit) if self.rate_limit else None

    @property
    def slack_oauth(self) -> bool:
        """Slack's install flow (many workspaces, tokens from installations) instead of one SLACK_BOT_TOKEN."""
        return bool(self.slack_client_id or self.slack_client_secret)

    @property
    def shard_ids(self) -> list[int] | None:
        return sorted(int(s) for s in self.discord_shard_ids) if self.discord_shard_ids else None

    def require(self, *names: str) -> None:
        """Fail with one line if a setting a command needs is missing."""
        for name in names:
            if getattr(self, name) in (None, ""):
                raise ConfigError(f"{name.upper()} is required for this command but is not set")


def _setting_names() -> list[str]:
    return sorted(name.upper() for name in Settings.model_fields)


def _namespaces() -> tuple[str, ...]:
    """``OPENAI_``, ``SLACK_``, ``THREAD_``...: the first word of every setting's name."""
    return tuple(sorted({name.split("_", 1)[0] + "_" for name in _setting_names() if "_" in name}))


def unknown_env_keys(path: str | os.PathLike[str]) -> list[tuple[str, str | None]]:
    """Keys of the dotenv file at ``path`` that look like settings but are none, each with the closest setting.

    A key looks like ours when it starts with one of our namespaces (``OPENAI_MODLE``)
    or is a near miss of a whole name (``OPNEAI_API_KEY``). Only keys are read, never values.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        return []
    known = _setting_names()
    namespaces = _namespaces()
    found: dict[str, str | None] = {}
    with file.open(encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            key = binding.key
            if not key or key.upper() in known or key in found:
                continue
            ours = key.upper().startswith(namespaces)
            # Below 0.75 the "closest" setting is a wrong hint (OPENAI_ORG_ID is no OPENAI_MODEL).
            close = difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.75 if ours else 0.85)
            if ours or close:
                found[key] = close[0] if close else None
    return list(found.items())


def _env_files(overrides: dict[str, Any]) -> list[str | os.PathLike[str]]:
    """The dotenv files ``Settings(**overrides)`` reads, as pydantic-settings picks them."""
    env_file = overrides.get("_env_file", ENV_FILE_SENTINEL)
    if env_file == ENV_FILE_SENTINEL:
        env_file = Settings.model_config.get("env_file")
    if env_file is None:
        return []
    if isinstance(env_file, str | os.PathLike):
        return [env_file]
    return list(env_file)


def _explain(exc: ValidationError) -> str:
    err = exc.errors()[0]
    name = str(err["loc"][0]).upper() if err["loc"] else "settings"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{name}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Read and validate settings; raise :class:`ConfigError` with one line."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    if settings.discord_shard_ids and settings.discord_shard_count is None:
        raise ConfigError("DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT")
    if settings.discord_shard_ids:
        try:
            ids = settings.shard_ids or []
        except ValueError:
            raise ConfigError("DISCORD_SHARD_IDS: use comma-separated shard numbers") from None
        if any(i < 0 or i >= (settings.discord_shard_count or 0) for i in ids):
            raise ConfigError("DISCORD_SHARD_IDS: every id must be below DISCORD_SHARD_COUNT")
    for path in _env_files(overrides):
        for key, guess in unknown_env_keys(path):
            hint = f" (did you mean {guess}?)" if guess else ""
            settings.warnings.append(f"{path}: unknown setting {key}{hint}")
    return settings
