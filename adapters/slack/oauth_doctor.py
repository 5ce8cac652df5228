"""``doctor``'s Slack checks with OAuth (``SLACK_CLIENT_ID`` set): what the install flow needs, and its result.

* ``slack oauth``: both halves of the app's credentials, and Slack accepting them: ``oauth.v2.access`` with a
  code that cannot exist answers ``invalid_code`` to the right credentials, ``invalid_client_id`` or
  ``bad_client_secret`` to wrong ones (nothing is installed or changed);
* ``slack oauth key``: ``TOKEN_ENCRYPTION_KEY`` is set and every key in it is a Fernet key;
* ``slack http``: the install pages and the events need HTTP mode and the signing secret;
* ``slack token``: no ``SLACK_BOT_TOKEN`` beside them;
* ``slack installs``: ``REDIS_URL`` is set, and how many workspaces installed the app (a count: no team is named).

The rules are start-up's own (:func:`adapters.slack.oauth.oauth_problems`): what fails here is what ``python -m bot
slack`` refuses to start with.
"""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.oauth import oauth_problems
from bot.checks import Line, secret
from bot.config import Settings

PIECE, KEY, HTTP, TOKEN, INSTALLS = "slack oauth", "slack oauth key", "slack http", "slack token", "slack installs"
PROBE_CODE = "threadkeeper-doctor-probe"
"""A code Slack never issued: only the credentials are judged."""
CREDENTIALS = "set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET from the app's Basic Information -> App Credentials"


async def check_oauth(settings: Settings, limit: float) -> list[Line]:
    """One line per piece; what fails is what start-up refuses with (:func:`adapters.slack.oauth.oauth_problems`)."""
    problems = {problem.piece: problem.text for problem in oauth_problems(settings)}
    base = settings.slack_api_url or AsyncWebClient.BASE_URL
    base = base if base.endswith("/") else base + "/"
    lines = [_failed(PIECE, problems[PIECE]) if PIECE in problems else await _credentials(settings, base, limit),
             _failed(KEY, problems[KEY]) if KEY in problems else _key(settings),
             _failed(HTTP, problems[HTTP]) if HTTP in problems else _http(settings)]
    if TOKEN in problems:
        lines.append(_failed(TOKEN, problems[TOKEN]))
    if INSTALLS in problems:
        lines.append(_failed(INSTALLS, problems[INSTALLS]))
    elif KEY not in problems:
        lines.append(await _installs(settings))
    return lines


def _failed(piece: str, text: str) -> Line:
    """A problem's line: what is wrong, then (after the ``;``) how to fix it."""
    what, _, fix = text.partition("; ")
    return Line("FAIL", piece, what, fix)


async def _credentials(settings: Settings, base: str, limit: float) -> Line:
    client_id, client_secret = settings.slack_client_id, secret(settings.slack_client_secret)
    client = AsyncWebClient(base_url=base, timeout=max(1, round(limit)), retry_handlers=[])
    try:
        await client.oauth_v2_access(client_id=str(client_id), client_secret=str(client_secret), code=PROBE_CODE)
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
    key = secret(settings.token_encryption_key) or ""
    count = len([k for k in key.split(",") if k.strip()])
    return Line("PASS", KEY, f"TOKEN_ENCRYPTION_KEY holds {count} Fernet key{'s' * (count > 1)}")


def _http(settings: Settings) -> Line:
    if secret(settings.slack_signing_secret) is None:
        return Line("FAIL", HTTP, "HTTP mode needs SLACK_SIGNING_SECRET",
                    "set SLACK_SIGNING_SECRET (Basic Information page)")
    return Line("PASS", HTTP, f"HTTP mode: /slack/events, /slack/install and /slack/oauth_redirect on PORT "
                f"{settings.port}")


async def _installs(settings: Settings) -> Line:
    from bot.runtime import build_runtime

    runtime = build_runtime(settings)
    try:
        count = await runtime.installations.count() if runtime.installations else 0
    except Exception as exc:  # Redis itself is the redis line's business
        return Line("WARN", INSTALLS, f"could not count the installations ({type(exc).__name__})",
                    "see the redis line")
    finally:
        await runtime.close()
    return Line("PASS", INSTALLS, f"{count} workspace{'s' * (count != 1)} installed the app")


__all__ = ["check_oauth"]
