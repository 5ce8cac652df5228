"""``python -m bot doctor``: check every configured piece, one line each, with the fix.

Each line reads ``PASS|FAIL|WARN|SKIP <piece>: <what was checked> — <the fix>``. Only FAIL
lines make the exit code non-zero. Every check is one or two cheap calls with a short
timeout, the checks run concurrently, and no line ever carries a secret: tokens and
passwords are scrubbed from the output, URLs are shown without their credentials.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TextIO
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import openai
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings

if TYPE_CHECKING:
    import discord

Status = Literal["PASS", "FAIL", "WARN", "SKIP"]

CHECK_TIMEOUT = 5.0
"""Seconds each piece may take before it counts as unreachable."""

DISCORD_API = "https://discord.com/api/v10"
GATEWAY_MESSAGE_CONTENT = 1 << 18
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19
OPTIONAL_SLACK_SCOPES = frozenset({"assistant:write"})
"""Scopes only the AI-app pane needs: missing ones warn instead of failing."""

SLACK_TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "no_permission"}
)


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


# -- Redis -----------------------------------------------------------------------------------------
async def check_redis(settings: Settings, limit: float) -> list[Line]:
    if not settings.redis_url:
        return [
            Line(
                "WARN",
                "redis",
                "REDIS_URL is not set: embedded in-process store (state is lost on restart, not shared by workers)",
                "fine for a try-out; set REDIS_URL for production",
            )
        ]
    where = redact_url(settings.redis_url)
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": limit,
        "socket_timeout": limit,
    }
    client: Redis | RedisCluster
    if settings.redis_cluster:
        client = RedisCluster.from_url(settings.redis_url, **options)
    else:
        client = Redis.from_url(settings.redis_url, retry=Retry(NoBackoff(), 0), **options)
    probe = f"{settings.redis_prefix}:doctor:{uuid.uuid4().hex}"
    try:
        await client.ping()
        await client.set(probe, "1", px=10_000)
        await client.delete(probe)
    except AuthenticationError:
        return [Line("FAIL", "redis", f"{where} refused our credentials", "fix the user/password in REDIS_URL")]
    except ResponseError as exc:
        if str(exc).startswith("READONLY"):
            return [Line("FAIL", "redis", f"{where} is a read-only replica", "point REDIS_URL at the primary")]
        if str(exc).startswith(("NOPERM", "NOAUTH")):
            return [Line("FAIL", "redis", f"{where} denied a read/write", "give the REDIS_URL user read/write access")]
        return [Line("FAIL", "redis", f"{where} answered an error to PING/SET", "check the server behind REDIS_URL")]
    except (RedisError, OSError):
        return [Line("FAIL", "redis", f"cannot connect to {where}", "start Redis there or fix REDIS_URL")]
    finally:
        await client.aclose()
    kind = "cluster" if settings.redis_cluster else "server"
    return [Line("PASS", "redis", f"{kind} {where} answers PING and a test write")]


# -- OpenAI ------------------------------------------------------------------------------------------
async def check_openai(settings: Settings, limit: float) -> list[Line]:
    piece = "openai"
    api_key = secret(settings.openai_api_key)
    if api_key is None and not settings.openai_base_url:
        return [Line("FAIL", piece, "OPENAI_API_KEY is not set", "set OPENAI_API_KEY (every command needs it)")]
    where = redact_url(settings.openai_base_url or "https://api.openai.com/v1")
    model = settings.openai_model
    client = openai.AsyncOpenAI(
        api_key=api_key or "unset", base_url=settings.openai_base_url, timeout=limit, max_retries=0
    )
    try:
        found = await client.models.retrieve(model)
    except openai.AuthenticationError:
        return [Line("FAIL", piece, f"{where} rejected the API key (401)", "set OPENAI_API_KEY to a valid key")]
    except openai.PermissionDeniedError:
        return [Line("FAIL", piece, f"the API key may not use {where} (403)", "check the key's project and role")]
    except openai.NotFoundError as exc:
        if exc.code == "model_not_found" or await _lists_models(client):
            return [Line("FAIL", piece, f"model '{model}' not found", "set OPENAI_MODEL to a model your key can use")]
        return [Line("FAIL", piece, f"{where} has no models endpoint (404)",
                     "check OPENAI_BASE_URL (OpenAI-compatible servers usually end in /v1)")]
    except openai.RateLimitError as exc:
        if exc.code == "insufficient_quota":
            return [Line("FAIL", piece, "the OpenAI account is out of quota (429)", "add credits or use another key")]
        return [Line("WARN", piece, f"{where} is rate limiting this key (429)", "try again in a minute")]
    except openai.APITimeoutError:
        return [Line("FAIL", piece, f"no answer from {where} within {limit:g}s", "check OPENAI_BASE_URL and network")]
    except openai.APIConnectionError:
        return [Line("FAIL", piece, f"cannot reach {where}", "check OPENAI_BASE_URL and your network")]
    except openai.APIStatusError as exc:
        return [Line("FAIL", piece, f"{where} answered {exc.status_code} to a model lookup", "check OPENAI_BASE_URL")]
    finally:
        await client.close()
    backend = settings.assistant_backend
    return [Line("PASS", piece, f"key accepted by {where}; model '{found.id}' available ({backend} backend)")]


async def _lists_models(client: openai.AsyncOpenAI) -> bool:
    """Tell "unknown model" from "wrong base URL" on servers whose 404 carries no code."""
    try:
        await client.models.list()
    except openai.APIError:
        return False
    return True


# -- Slack -------------------------------------------------------------------------------------------
def slack_scopes() -> tuple[str, ...]:
    """The scopes the Slack adapter's handlers need (``slack-manifest.yml`` asks for the same)."""
    from adapters.slack import SLACK_BOT_SCOPES

    return SLACK_BOT_SCOPES


async def check_slack(settings: Settings, limit: float) -> list[Line]:
    token = secret(settings.slack_bot_token)
    if token is None:
        if secret(settings.slack_app_token) or secret(settings.slack_signing_secret):
            return [Line("FAIL", "slack", "SLACK_APP_TOKEN/SLACK_SIGNING_SECRET set but SLACK_BOT_TOKEN is not",
                         "set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-…)")]
        return [Line("SKIP", "slack", "SLACK_BOT_TOKEN not set")]
    fix_token = "set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-…) from the app's OAuth & Permissions page"
    if not token.startswith("xoxb-"):
        kind = "an app-level token" if token.startswith("xapp-") else "not a bot token"
        return [Line("FAIL", "slack", f"SLACK_BOT_TOKEN is {kind}", fix_token)]
    base = settings.slack_api_url or AsyncWebClient.BASE_URL
    base = base if base.endswith("/") else base + "/"
    client = AsyncWebClient(token=token, base_url=base, timeout=max(1, round(limit)), retry_handlers=[])
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error", "unknown_error"))
        if error in SLACK_TOKEN_ERRORS:
            return [Line("FAIL", "slack", f"auth.test rejected the bot token ({error})", fix_token)]
        return [Line("FAIL", "slack", f"auth.test failed ({error})", "check SLACK_BOT_TOKEN and SLACK_API_URL")]
    except (aiohttp.ClientError, TimeoutError, OSError):
        return [Line("FAIL", "slack", f"cannot reach {base}", "check SLACK_API_URL and your network")]
    lines = [Line("PASS", "slack", f"auth.test: bot @{auth.get('user')} in team {auth.get('team_id')}")]
    lines.append(_scopes_line(_header(auth.headers, "x-oauth-scopes")))
    lines.append(await _slack_mode(settings, base, limit))
    return lines


def _header(headers: Any, name: str) -> str | None:
    for key, value in dict(headers or {}).items():
        if str(key).lower() == name:
            return str(value[0] if isinstance(value, list) else value)
    return None


def _scopes_line(granted_header: str | None) -> Line:
    needed = slack_scopes()
    if granted_header is None:
        return Line("WARN", "slack scopes", "the API did not report the token's scopes; not checked",
                    f"make sure the app has {', '.join(needed)} (slack-manifest.yml)")
    granted = {s.strip() for s in granted_header.split(",") if s.strip()}
    missing = [s for s in needed if s not in granted]
    fix = "add them to the app (paste slack-manifest.yml) and reinstall it to the workspace"
    required = [s for s in missing if s not in OPTIONAL_SLACK_SCOPES]
    if required:
        return Line("FAIL", "slack scopes", f"missing {', '.join(missing)}", fix)
    if missing:
        return Line("WARN", "slack scopes", f"missing {', '.join(missing)}: the AI-app pane won't work", fix)
    return Line("PASS", "slack scopes", f"all {len(needed)} the bot needs ({', '.join(needed)})")


async def _slack_mode(settings: Settings, base: str, limit: float) -> Line:
    app_token = secret(settings.slack_app_token)
    if app_token is None:
        if secret(settings.slack_signing_secret) is None:
            return Line("FAIL", "slack http", "HTTP mode (no SLACK_APP_TOKEN) needs SLACK_SIGNING_SECRET",
                        "set SLACK_SIGNING_SECRET (Basic Information page), or SLACK_APP_TOKEN for Socket Mode")
        return Line("PASS", "slack http", f"HTTP mode: signing secret set; Slack posts to /slack/events on PORT "
                    f"{settings.port}")
    fix = "set SLACK_APP_TOKEN to an app-level token (xapp-…) with connections:write (Basic Information page)"
    if not app_token.startswith("xapp-"):
        return Line("FAIL", "slack socket mode", "SLACK_APP_TOKEN is not an app-level token", fix)
    client = AsyncWebClient(base_url=base, timeout=max(1, round(limit)), retry_handlers=[])
    try:
        await client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = str(exc.response.get("error", "unknown_error"))
        return Line("FAIL", "slack socket mode", f"apps.connections.open failed ({error})", fix)
    except (aiohttp.ClientError, TimeoutError, OSError):
        return Line("FAIL", "slack socket mode", f"cannot reach {base}", "check SLACK_API_URL and your network")
    return Line("PASS", "slack socket mode", "the app token opens a Socket Mode connection")


# -- Discord -----------------------------------------------------------------------------------------
async def check_discord(settings: Settings, limit: float) -> list[Line]:
    token = secret(settings.discord_token)
    if token is None:
        return [Line("SKIP", "discord", "DISCORD_TOKEN not set")]
    from adapters.discord import intents, rest_base

    base = rest_base(settings.discord_api_base) if settings.discord_api_base else DISCORD_API
    headers = {"Authorization": f"Bot {token}", "User-Agent": "DiscordBot (threadkeeper doctor, 1.0)"}
    fix_token = "set DISCORD_TOKEN to the bot token (developer portal -> Bot -> Reset Token)"
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=limit)) as http:
        try:
            status, me = await _get_json(http, f"{base}/users/@me")
            if status == 401:
                return [Line("FAIL", "discord", "GET /users/@me rejected the token (401)", fix_token)]
            if status != 200:
                return [Line("FAIL", "discord", f"GET /users/@me answered {status}", "check DISCORD_API_BASE")]
            if not me.get("bot"):
                return [Line("FAIL", "discord", "DISCORD_TOKEN belongs to a user account, not a bot", fix_token)]
            status, app = await _get_json(http, f"{base}/oauth2/applications/@me")
        except (aiohttp.ClientError, TimeoutError, OSError):
            return [Line("FAIL", "discord", f"cannot reach {base}", "check DISCORD_API_BASE and your network")]
    lines = [Line("PASS", "discord", f"token valid: bot {me.get('username')} ({me.get('id')})")]
    if status != 200:
        lines.append(Line("FAIL", "discord app", f"GET /oauth2/applications/@me answered {status}",
                          "check DISCORD_TOKEN and DISCORD_API_BASE"))
        return lines
    lines.append(_application_line(str(app.get("id")), str(me.get("id")), app))
    lines.append(_intents_line(intents(settings), int(app.get("flags") or 0)))
    return lines


async def _get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as response:
        if response.status != 200:
            return response.status, {}
        body = await response.json()
        return response.status, body if isinstance(body, dict) else {}


def _application_line(app_id: str, bot_id: str, app: dict[str, Any]) -> Line:
    name = app.get("name")
    if app_id != bot_id:
        # `--invite-url` reads the id from the token, which is the bot user's id.
        return Line("WARN", "discord app", f"application id {app_id} differs from the bot user id {bot_id}",
                    f"build the invite URL with client_id={app_id} instead of `--invite-url`")
    public = "" if app.get("bot_public", True) else "; only the owner can invite it (Public Bot is off)"
    return Line("PASS", "discord app", f"application id {app_id} ({name}); `--invite-url` uses it{public}")


def _intents_line(wanted: discord.Intents, flags: int) -> Line:
    names = ", ".join(name for name, on in wanted if on)
    if not wanted.message_content:
        return Line("PASS", "discord intents", f"{names}: no privileged intent needed")
    if flags & (GATEWAY_MESSAGE_CONTENT | GATEWAY_MESSAGE_CONTENT_LIMITED):
        return Line("PASS", "discord intents", f"{names}: Message Content is enabled for the app")
    return Line("FAIL", "discord intents", "DISCORD_CHANNELS needs the Message Content intent, which is off",
                "enable it (developer portal -> Bot -> Privileged Gateway Intents) or unset DISCORD_CHANNELS")


# -- running -----------------------------------------------------------------------------------------
Check = Callable[[Settings, float], Awaitable[list[Line]]]
CHECKS: tuple[tuple[str, Check], ...] = (
    ("redis", check_redis),
    ("openai", check_openai),
    ("slack", check_slack),
    ("discord", check_discord),
)


async def _bounded(piece: str, check: Check, settings: Settings, limit: float) -> list[Line]:
    try:
        async with asyncio.timeout(limit + 1.0):
            return await check(settings, limit)
    except TimeoutError:
        return [Line("FAIL", piece, f"no answer within {limit:g}s", "check the address and your network")]
    except Exception as exc:  # a check must never crash the others; the type name carries no secret
        return [Line("FAIL", piece, f"check crashed ({type(exc).__name__})", "run with LOG_LEVEL=DEBUG and report it")]


async def run_checks(settings: Settings, limit: float = CHECK_TIMEOUT) -> list[Line]:
    """Every check, concurrently; the lines come back in a fixed order."""
    results = await asyncio.gather(*(_bounded(piece, check, settings, limit) for piece, check in CHECKS))
    return [line for lines in results for line in lines]


async def main(settings: Settings, *, limit: float = CHECK_TIMEOUT, out: TextIO | None = None) -> int:
    """Print one line per check; 1 if anything failed, else 0."""
    stream = out or sys.stdout
    lines = await run_checks(settings, limit)
    secrets = secrets_of(settings)
    for line in lines:
        print(scrub(str(line), secrets), file=stream)
    failed = sum(1 for line in lines if line.status == "FAIL")
    passed = sum(1 for line in lines if line.status == "PASS")
    print(f"doctor: {passed} passed, {failed} failed", file=stream)
    return 1 if failed else 0


__all__ = ["CHECKS", "Line", "check_discord", "check_openai", "check_redis", "check_slack", "main", "run_checks"]
