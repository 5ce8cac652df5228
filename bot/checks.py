"""The vocabulary of ``doctor``'s checks, shared by the core's checks and the adapters' own.

Each check returns :class:`Line` s that read ``PASS|FAIL|WARN|SKIP <piece>: <what was checked> — <the
fix>``; none may carry a secret.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from bot.config import Settings

Status = Literal["PASS", "FAIL", "WARN", "SKIP"]

@dataclass(frozen=True, slots=True)
class Line:
    status: Status
    piece: str
    what: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.status} {self.piece}: {self.what}"
        return f"{text} — {self.fix}" if self.fix else text


def secret(value: SecretStr | None) -> str | None:
    """A secret's value, or ``None`` when unset or blank (``FOO=`` in ``.env`` is not a token)."""
    text = value.get_secret_value().strip() if value is not None else ""
    return text or None


def redact_url(url: str) -> str:
    """The URL without user name and password (``redis://:secret@host`` -> ``redis://host``)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value the output must never contain (including a Redis URL's password)."""
    values = [
        s.get_secret_value()
        for s in (
            settings.openai_api_key,
            settings.slack_bot_token,
            settings.slack_signing_secret,
            settings.slack_app_token,
            settings.slack_client_secret,
            settings.token_encryption_key,
            settings.discord_token,
        )
        if s is not None
    ]
    if settings.redis_url:
        password = urlsplit(settings.redis_url).password
        if password:
            values.append(password)
    return [v for v in values if len(v) >= 8]  # shorter ones are test values, and would garble the output


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


Check = Callable[[Settings, float], Awaitable[list[Line]]]
"""A check: settings and a time limit in seconds -> its lines."""
