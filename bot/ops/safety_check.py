"""``doctor`` lines for ``PROFILES_FILE`` and ``MODERATION``, and the start-up check of moderation.

Both stay silent (no line) when their setting is unset, so a plain configuration reads as before.
A server without a moderation endpoint is a FAIL in ``doctor`` and, with ``MODERATION`` on, a
one-line :class:`~bot.config.ConfigError` at start: the bot never runs believing it checks messages
that it cannot check.
"""

from __future__ import annotations

import openai

from bot.assistants.moderation import probe
from bot.checks import Line, redact_url, secret
from bot.config import ConfigError, Settings
from bot.profiles import ProfileError, Profiles, read_profiles

START_TIMEOUT = 10.0


def _client(settings: Settings, limit: float) -> openai.AsyncOpenAI:
    key = secret(settings.openai_api_key) or "unset"
    return openai.AsyncOpenAI(api_key=key, base_url=settings.openai_base_url, timeout=limit, max_retries=0)


def _where(settings: Settings) -> str:
    return redact_url(settings.openai_base_url or "https://api.openai.com/v1")


def _missing(settings: Settings) -> str:
    return (f"{_where(settings)} has no moderation endpoint (POST /moderations), which MODERATION="
            f"{settings.moderation} needs")


async def check_moderation(settings: Settings, limit: float) -> list[Line]:
    if settings.moderation == "off":
        return []
    client = _client(settings, limit)
    try:
        found = await probe(client, settings.moderation_model)
    except openai.APIError as exc:
        status = getattr(exc, "status_code", None) or type(exc).__name__
        return [Line("FAIL", "moderation", f"{_where(settings)} answered {status} to a moderation check",
                     "check OPENAI_BASE_URL, OPENAI_API_KEY and MODERATION_MODEL")]
    finally:
        await client.close()
    if found == "missing":
        return [Line("FAIL", "moderation", _missing(settings), "use a server with one, or set MODERATION=off")]
    return [Line("PASS", "moderation", f"{_where(settings)} moderates with '{settings.moderation_model}' "
                 f"(MODERATION={settings.moderation})")]


async def require_moderation(settings: Settings, limit: float = START_TIMEOUT) -> None:
    """Start-up: with MODERATION on, a server without the endpoint is a one-line ConfigError.

    Any other failure (the server is down right now) does not stop the start: each message's check
    then fails closed with the usual sentence.
    """
    if settings.moderation == "off":
        return
    client = _client(settings, limit)
    try:
        found = await probe(client, settings.moderation_model)
    except openai.APIError:
        return
    finally:
        await client.close()
    if found == "missing":
        raise ConfigError(f"MODERATION: {_missing(settings)}; set MODERATION=off or use a server that has one")


def summary(profiles: Profiles) -> str:
    tools = sorted({t.label for _, p in ((None, profiles.defaults), *profiles.rules) for t in p.tools})
    return (f"{len(profiles.rules)} profile(s), default model '{profiles.defaults.model}'"
            + (f", tools: {', '.join(tools)}" if tools else ""))


async def check_profiles(settings: Settings, limit: float) -> list[Line]:
    path = settings.profiles_file
    if not path:
        return []
    try:
        profiles = read_profiles(path, settings)
    except ProfileError as exc:
        return [Line("FAIL", "profiles", f"PROFILES_FILE {path}: {exc}",
                     f"fix the file (python -m bot profiles check {path})")]
    return [Line("PASS", "profiles", f"PROFILES_FILE {path}: {summary(profiles)}")]
