"""``doctor``'s Slack checks with OAuth (``SLACK_CLIENT_ID`` set): what the install flow needs, and its result.

* ``slack oauth``: both halves of the app's credentials, and Slack accepting them: ``oauth.v2.access`` with a
  code that cannot exist answers ``invalid_code`` to the right credentials, ``invalid_client_id`` or
  ``bad_client_secret`` to wrong ones (nothing is installed or changed);
* ``slack oauth key``: ``TOKEN_ENCRYPTION_KEY`` is set and every key in it is a Fernet key;
* ``slack http``: the install pages and the events need HTTP mode and the signing secret;
* ``slack installs``: how many workspaces installed the app (a count: no team is named).
"""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.checks import Line, secret
from bot.config import ConfigError, Settings
from bot.crypto import KEY_HINT, Sealer

PIECE = "slack oauth"
PROBE_CODE = "threadkeeper-doctor-probe"
"""A code Slack never issued: only the credentials are judged."""
CREDENTIALS = "set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET from the app's Basic Information -> App Credentials"


async def check_oauth(settings: Settings, limit: float) -> list[Line]:
    base = settings.slack_api_url or AsyncWebClient.BASE_URL
    base = base if base.endswith("/") else base + "/"
    lines = [await _credentials(settings, base, limit), _key(settings), _http(settings)]
    if secret(settings.slack_bot_token):
        lines.append(Line("FAIL", PIECE, "SLACK_BOT_TOKEN is set too: with OAuth each workspace's token comes from "
                          "its installation", "unset SLACK_BOT_TOKEN (or SLACK_CLIENT_ID for a single workspace)"))
    if lines[1].status == "PASS":
        lines.append(await _installs(settings))
    return lines


async def _credentials(settings: Settings, base: str, limit: float) -> Line:
    client_id, client_secret = settings.slack_client_id, secret(settings.slack_client_secret)
    if not client_id or client_secret is None:
        missing = "SLACK_CLIENT_SECRET" if client_id else "SLACK_CLIENT_ID"
        return Line("FAIL", PIECE, f"{missing} is not set (OAuth needs both)", CREDENTIALS)
    client = AsyncWebClient(base_url=base, timeout=max(1, round(limit)), retry_handlers=[])
    try:
        await client.oauth_v2_access(client_id=client_id, client_secret=client_secret, code=PROBE_CODE)
    except SlackApiError as exc:
        error = str(exc.response.get("error", "unknown_error"))
        if error in ("invalid_client_id", "bad_client_secret"):
            return Line("FAIL", PIECE, f"Slack refused the app's credentials ({error})", CREDENTIALS)
        if error != "invalid_code":
            return Line("WARN", PIECE, f"oauth.v2.access answered {error}; the credentials were not judged",
                        "check SLACK_API_URL, then try an install")
    except (aiohttp.ClientError, TimeoutError, OSError):
        return Line("FAIL", PIECE, f"cannot reach {base}", "check SLACK_API_URL and your network")
    else:
        return Line("WARN", PIECE, "oauth.v2.access accepted a made-up code", "check SLACK_API_URL")
    return Line("PASS", PIECE, f"Slack accepts client id {client_id} and its secret")


def _key(settings: Settings) -> Line:
    key = secret(settings.token_encryption_key)
    if key is None:
        return Line("FAIL", f"{PIECE} key", "TOKEN_ENCRYPTION_KEY is not set: bot tokens are kept encrypted with it",
                    KEY_HINT)
    try:
        Sealer(key)
    except ConfigError as exc:
        return Line("FAIL", f"{PIECE} key", str(exc).split(";", 1)[0], KEY_HINT)
    count = len([k for k in key.split(",") if k.strip()])
    return Line("PASS", f"{PIECE} key", f"TOKEN_ENCRYPTION_KEY holds {count} Fernet key{'s' * (count > 1)}")


def _http(settings: Settings) -> Line:
    if secret(settings.slack_app_token):
        return Line("FAIL", "slack http", "SLACK_APP_TOKEN is set: the install pages need HTTP mode",
                    "unset SLACK_APP_TOKEN and give Slack a public https address (slack-manifest.yml)")
    if secret(settings.slack_signing_secret) is None:
        return Line("FAIL", "slack http", "HTTP mode needs SLACK_SIGNING_SECRET",
                    "set SLACK_SIGNING_SECRET (Basic Information page)")
    return Line("PASS", "slack http", f"HTTP mode: /slack/events, /slack/install and /slack/oauth_redirect on PORT "
                f"{settings.port}")


async def _installs(settings: Settings) -> Line:
    if not settings.redis_url:
        return Line("WARN", "slack installs", "REDIS_URL is not set: installations would live in this process only",
                    "set REDIS_URL: installations must outlive a restart and be shared by every worker")
    from bot.runtime import build_runtime

    runtime = build_runtime(settings)
    try:
        count = await runtime.installations.count() if runtime.installations else 0
    except Exception as exc:  # Redis itself is the redis line's business
        return Line("WARN", "slack installs", f"could not count the installations ({type(exc).__name__})",
                    "see the redis line")
    finally:
        await runtime.close()
    return Line("PASS", "slack installs", f"{count} workspace{'s' * (count != 1)} installed the app")


__all__ = ["check_oauth"]
