"""Logging set-up: text or JSON lines on stderr, secrets masked, libraries' expected start-up notes dropped."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_SECRET = re.compile(
    r"(xox[abprs]-[A-Za-z0-9-]{6,}|xapp-[A-Za-z0-9-]{6,}|sk-[A-Za-z0-9_-]{8,}"
    r"|[MN][A-Za-z\d]{23,}\.[\w-]{6}\.[\w-]{27,}|Bearer\s+[A-Za-z0-9._-]{8,})"
)


def mask(text: str) -> str:
    """Hide anything shaped like a Slack, OpenAI or Discord token."""
    return _SECRET.sub(lambda m: m.group(0)[:4] + "…[masked]", text)


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for field in ("key", "thread_id", "event"):
            value = getattr(record, field, None)
            if value is not None:
                out[field] = value
        if record.exc_info:
            out["exc"] = mask(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)


EXPECTED_NOTES: frozenset[tuple[str, str]] = frozenset({
    # Bolt reads SLACK_BOT_TOKEN from the environment even when given a client (whose token it uses).
    ("slack_bolt.AsyncApp", "As you gave `client` as well, `token` will be unused."),
    # Given `authorize` (one auth.test per process: adapters/slack/auth.py), Bolt says it ignores the token:
    # the token comes back from that authorize.
    ("slack_bolt.AsyncApp", "As `installation_store` or `authorize` has been used, `token` "
                            "(or SLACK_BOT_TOKEN env variable) will be ignored."),
    # The bot has no voice features, so it needs neither PyNaCl nor davey.
    ("discord.client", "PyNaCl is not installed, voice will NOT be supported"),
    ("discord.client", "davey is not installed, voice will NOT be supported"),
})
"""(logger, message) of warnings libraries give at every start about things the bot does not use."""


class ExpectedNotesFilter(logging.Filter):
    """Drops exactly the :data:`EXPECTED_NOTES`; every other record of those loggers passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return (record.name, str(record.msg)) not in EXPECTED_NOTES


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes, so that a terminal UI that redirects
    it (prompt_toolkit's ``patch_stdout``) shows log lines above its prompt instead of through it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def quiet_for_terminal() -> None:
    """A person chats in this terminal: only warnings and errors on stderr, not INFO in the middle of it."""
    for handler in logging.getLogger().handlers:
        handler.setLevel(max(handler.level, logging.WARNING))


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = StderrHandler()
    handler.addFilter(MaskingFilter())
    handler.addFilter(ExpectedNotesFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpx2", "httpcore", "openai", "discord.gateway", "discord.client", "slack_bolt"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
