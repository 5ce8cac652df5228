"""``doctor``'s Discord checks: the token, the application, and the intents the settings need."""

from __future__ import annotations

from typing import Any

import aiohttp
import discord

from adapters.discord import intents, rest_base
from adapters.discord.setup import content_needed_by
from bot.checks import Line, secret
from bot.config import Settings

DISCORD_API = "https://discord.com/api/v10"
GATEWAY_MESSAGE_CONTENT = 1 << 18
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19


async def check_discord(settings: Settings, limit: float) -> list[Line]:
    token = secret(settings.discord_token)
    if token is None:
        return [Line("SKIP", "discord", "DISCORD_TOKEN not set")]
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
    lines.append(_intents_line(intents(settings), int(app.get("flags") or 0), content_needed_by(settings)))
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


def _intents_line(wanted: discord.Intents, flags: int, needs: list[str]) -> Line:
    names = ", ".join(name for name, on in wanted if on)
    if not wanted.message_content:
        return Line("PASS", "discord intents", f"{names}: no privileged intent needed")
    if flags & (GATEWAY_MESSAGE_CONTENT | GATEWAY_MESSAGE_CONTENT_LIMITED):
        return Line("PASS", "discord intents", f"{names}: Message Content is enabled for the app")
    who = " and ".join(needs)
    verb = "needs" if len(needs) == 1 else "need"
    return Line("FAIL", "discord intents", f"{who} {verb} the Message Content intent, which is off",
                f"enable it (developer portal -> Bot -> Privileged Gateway Intents) or unset {who}")
