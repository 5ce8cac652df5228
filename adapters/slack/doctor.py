"""``doctor``'s Slack checks: the bot token, its scopes, and the transport (HTTP or Socket Mode); with OAuth,
the app's credentials, the encryption key and how many workspaces installed the app (:mod:`.oauth_doctor`)."""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import SLACK_BOT_SCOPES
from adapters.slack.oauth_doctor import check_oauth
from bot.checks import Line, secret
from bot.config import Settings

OPTIONAL_SLACK_SCOPES = frozenset({"assistant:write"})
"""Scopes only the AI-app pane needs: missing ones warn instead of failing."""

SCOPE_USES = {
    "channels:history": "threads in public channels",
    "groups:history": "threads in private channels",
    "mpim:history": "threads in group DMs",
    "users:read": "speakers' names",
}
"""What a missing scope breaks, said next to it (the thread context and follow-ups need the ``*:history`` ones)."""

SLACK_TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "no_permission"}
)


async def check_slack(settings: Settings, limit: float) -> list[Line]:
    if settings.slack_oauth:
        return await check_oauth(settings, limit)
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
    needed = SLACK_BOT_SCOPES
    if granted_header is None:
        return Line("WARN", "slack scopes", "the API did not report the token's scopes; not checked",
                    f"make sure the app has {', '.join(needed)} (slack-manifest.yml)")
    granted = {s.strip() for s in granted_header.split(",") if s.strip()}
    missing = [f"{s} ({SCOPE_USES[s]})" if s in SCOPE_USES else s for s in needed if s not in granted]
    fix = "add them to the app (paste slack-manifest.yml) and reinstall it to the workspace"
    required = [s for s in missing if s.split()[0] not in OPTIONAL_SLACK_SCOPES]
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
