"""Installing the bot in many Slack workspaces: Bolt's install flow (OAuth v2) on the installations in Redis.

With ``SLACK_CLIENT_ID`` and ``SLACK_CLIENT_SECRET`` set, HTTP mode serves Bolt's :class:`AsyncOAuthFlow`:

* ``GET /slack/install`` issues a state (kept in Redis for :data:`STATE_TTL`, and in a cookie of the
  installer's browser) and redirects (302) to Slack's authorize page with the manifest's scopes
  (``SLACK_BOT_SCOPES``). The page is on ``SLACK_API_URL``'s host when that is set (GovSlack, a proxy, the
  tests' fake), else slack.com.
* ``GET /slack/oauth_redirect?code=…&state=…`` consumes the state (once; any worker can, since it is in
  Redis), exchanges the code at ``oauth.v2.access`` and keeps the installation, sealed with
  ``TOKEN_ENCRYPTION_KEY`` (:mod:`bot.store.installations`). Failures (a state that is unknown, used or
  expired, a code Slack refuses) get Bolt's page naming the reason, and a WARNING line here.

The events of each workspace are then authorized from its installation (:class:`adapters.slack.auth.Installed`).
One installation is kept per workspace (an org-wide install: per enterprise), the bot's: the app asks for no
user scopes, and token rotation stays off (``token_rotation_enabled: false`` in the manifest).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast
from urllib.parse import urljoin

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncFailureArgs, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.kit.tasks import InFlight
from adapters.slack.auth import Installed, OneAuthTest
from bot.checks import secret
from bot.config import ConfigError, Settings
from bot.core import Core
from bot.crypto import KEY_HINT, Sealer
from bot.errors import BotError

log = logging.getLogger("threadkeeper.slack")

PLATFORM = "slack"
SLACK_LIFECYCLE_EVENTS: tuple[str, ...] = ("app_uninstalled", "tokens_revoked")
"""A workspace removed the app or revoked its token: its installation and threads are erased (:class:`Uninstalls`)."""
STATE_TTL = 600
"""Seconds an install flow may take from ``/slack/install`` to the redirect (Bolt's default)."""
AUTHORIZE_PATH = "/oauth/v2/authorize"

FAILURES = {
    "invalid_state": "the install link expired, was used already or was not made here: start again at /slack/install",
    "invalid_browser": "the browser that finished is not the one that started (no state cookie): start again "
                       "at /slack/install in one browser",
    "invalid_code": "Slack refused the code (used already, expired, or SLACK_CLIENT_ID/SECRET are not this app's)",
    "missing_code": "the redirect carried no code",
    "access_denied": "the installer cancelled on Slack's page",
    "storage_error": "the installation could not be stored",
}
"""What each reason Bolt reports means, for the log line."""


class InstallationsPort(Protocol):
    """What this module needs of ``bot.store.installations.Installations`` (adapters never import the store)."""

    async def save(self, platform: str, workspace: str, record: dict[str, Any]) -> None: ...
    async def find(self, platform: str, workspace: str) -> dict[str, Any] | None: ...
    async def delete(self, platform: str, workspace: str) -> bool: ...
    async def issue_state(self, state: str, ttl: float) -> None: ...
    async def consume_state(self, state: str) -> bool: ...


def workspace_of(enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None) -> str:
    """The workspace an installation is kept under: the team, or the enterprise for an org-wide install."""
    if is_enterprise_install and enterprise_id:
        return f"enterprise:{enterprise_id}"
    return str(team_id or "")


_FIELDS = ("app_id", "enterprise_id", "enterprise_name", "team_id", "team_name", "bot_token", "bot_id",
           "bot_user_id", "is_enterprise_install", "installed_at", "user_id", "token_type")


class RedisInstallations(AsyncInstallationStore):
    """Bolt's installation store on the installations port: one bot installation per workspace."""

    def __init__(self, port: InstallationsPort) -> None:
        self.port = port

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        record = {name: getattr(installation, name) for name in _FIELDS}
        record["bot_scopes"] = list(installation.bot_scopes or [])
        workspace = workspace_of(installation.enterprise_id, installation.team_id, installation.is_enterprise_install)
        await self.port.save(PLATFORM, workspace, record)

    async def async_save_bot(self, bot: Bot) -> None:
        """Only Bolt's token rotation saves a bot alone, and rotation stays off: nothing to keep apart."""

    async def _record(self, enterprise_id: str | None, team_id: str | None,
                      is_enterprise_install: bool | None) -> dict[str, Any] | None:
        return await self.port.find(PLATFORM, workspace_of(enterprise_id, team_id, is_enterprise_install))

    async def async_find_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                      user_id: str | None = None,
                                      is_enterprise_install: bool | None = False) -> Installation | None:
        record = await self._record(enterprise_id, team_id, is_enterprise_install)
        if record is None or (user_id is not None and record.get("user_id") != user_id):
            return None
        return Installation(**{**record, "installed_at": _when(record)})

    async def async_find_bot(self, *, enterprise_id: str | None, team_id: str | None,
                             is_enterprise_install: bool | None = False) -> Bot | None:
        record = await self._record(enterprise_id, team_id, is_enterprise_install)
        if record is None or not record.get("bot_token"):
            return None
        return Installation(**{**record, "installed_at": _when(record)}).to_bot()

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.async_delete_installation(enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                        user_id: str | None = None) -> None:
        if user_id is None:  # a user's own token is never kept: only the workspace's installation goes
            await self.port.delete(PLATFORM, workspace_of(enterprise_id, team_id, team_id is None))


def _when(record: dict[str, Any]) -> float:
    value = record.get("installed_at")
    return float(value) if isinstance(value, int | float) else datetime.now().timestamp()


class RedisStates(AsyncOAuthStateStore):
    """Install flows' states in Redis: issued by one worker, consumed once by any."""

    def __init__(self, port: InstallationsPort, ttl: float = STATE_TTL) -> None:
        self.port = port
        self.ttl = ttl

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(32)
        await self.port.issue_state(state, self.ttl)
        return state

    async def async_consume(self, state: str) -> bool:
        return bool(state) and await self.port.consume_state(state)


async def _installed(args: AsyncSuccessArgs) -> BoltResponse:
    found = args.installation
    log.info("Slack app installed in workspace %s", workspace_of(found.enterprise_id, found.team_id,
                                                                 found.is_enterprise_install))
    return await args.default.success(args)


async def _failed(args: AsyncFailureArgs) -> BoltResponse:
    log.warning("a Slack install failed (%s): %s", args.reason, FAILURES.get(args.reason, "see Bolt's log"))
    return await args.default.failure(args)


def authorize_url(settings: Settings) -> str:
    """Slack's authorize page on the host of ``SLACK_API_URL`` (slack.com by default)."""
    return urljoin(settings.slack_api_url or "https://slack.com/api/", AUTHORIZE_PATH)


def oauth_settings(settings: Settings, installations: RedisInstallations,
                   scopes: tuple[str, ...]) -> AsyncOAuthSettings:
    """Bolt's OAuth settings for this deployment (``SLACK_CLIENT_ID`` and its secret must be set)."""
    secret = settings.slack_client_secret.get_secret_value() if settings.slack_client_secret else None
    return AsyncOAuthSettings(
        client_id=settings.slack_client_id, client_secret=secret, scopes=list(scopes), user_scopes=[],
        redirect_uri=settings.slack_redirect_uri, install_page_rendering_enabled=False,
        authorization_url=authorize_url(settings), installation_store=installations, installation_store_bot_only=True,
        state_store=RedisStates(installations.port), state_expiration_seconds=STATE_TTL,
        callback_options=AsyncCallbackOptions(success=_installed, failure=_failed), logger=log,
    )


def check_oauth(settings: Settings, port: InstallationsPort | None) -> None:
    """One-line :class:`ConfigError` unless OAuth is set up completely: both halves of the app's credentials,
    HTTP mode (the install pages are web pages), no single token beside it, and a usable encryption key."""
    if not settings.slack_client_id or not secret(settings.slack_client_secret):
        missing = "SLACK_CLIENT_SECRET" if settings.slack_client_id else "SLACK_CLIENT_ID"
        raise ConfigError(f"{missing} is required for Slack OAuth (SLACK_CLIENT_ID and SLACK_CLIENT_SECRET go "
                          "together: Basic Information -> App Credentials)")
    if secret(settings.slack_app_token):
        raise ConfigError("SLACK_APP_TOKEN: Slack OAuth serves its install pages in HTTP mode; unset SLACK_APP_TOKEN")
    if secret(settings.slack_bot_token):
        raise ConfigError("SLACK_BOT_TOKEN: with SLACK_CLIENT_ID set, each workspace's token comes from its "
                          "installation; unset SLACK_BOT_TOKEN (or SLACK_CLIENT_ID for one workspace)")
    key = secret(settings.token_encryption_key)
    if key is None:
        raise ConfigError(f"TOKEN_ENCRYPTION_KEY is required for Slack OAuth (bot tokens are kept encrypted in "
                          f"Redis); {KEY_HINT}")
    Sealer(key)  # a key that is set but unusable: its own line
    if port is None:
        raise ConfigError("TOKEN_ENCRYPTION_KEY could not be used")


def serve_install_pages(web_app: web.Application, flow: AsyncOAuthFlow) -> None:
    """``GET /slack/install`` and ``GET /slack/oauth_redirect``, answered by Bolt's flow."""

    async def install(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await flow.handle_installation(await to_bolt_request(request)))

    async def redirect(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await flow.handle_callback(await to_bolt_request(request)))

    web_app.router.add_get(flow.install_path, install)
    web_app.router.add_get(flow.redirect_uri_path, redirect)


class Uninstalls:
    """``app_uninstalled`` and ``tokens_revoked`` (of the bot's token): the workspace's installation is deleted
    and every thread of it erased through the core's one deleter, as ``threads forget-workspace slack T…`` does.

    Acknowledged at once; the erasing runs in a task of the adapter's own. Slack may deliver the event again:
    erasing is idempotent.
    """

    def __init__(self, core: Core, in_flight: InFlight, installations: RedisInstallations | None = None,
                 revoked: Callable[[str], None] | None = None) -> None:
        self.core = core
        self.in_flight = in_flight
        self.installations = installations
        self.revoked = revoked
        """Told the token that stopped working (the authorizer forgets what it knew of it)."""

    def register(self, app: AsyncApp) -> None:
        app.event("app_uninstalled")(self._on_event)
        app.event("tokens_revoked")(self._on_event)

    async def _on_event(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        event = body.get("event") or {}
        if event.get("type") == "tokens_revoked" and not (event.get("tokens") or {}).get("bot"):
            return  # only people's own tokens, which the app never keeps
        team = str(body.get("team_id") or context.team_id or "")
        enterprise = body.get("enterprise_id") or context.enterprise_id
        if team:
            self.in_flight.spawn(self.erase(team, enterprise, bool(context.is_enterprise_install)))

    async def erase(self, team: str, enterprise: str | None, org_wide: bool) -> None:
        if self.installations is not None:
            bot = await self.installations.async_find_bot(enterprise_id=enterprise, team_id=team,
                                                          is_enterprise_install=org_wide)
            if bot is not None and self.revoked is not None:
                self.revoked(bot.bot_token)
            await self.installations.async_delete_all(enterprise_id=enterprise, team_id=None if org_wide else team)
        try:
            result = await self.core.forget_workspace(PLATFORM, team)
        except BotError as exc:
            log.error("Slack workspace %s removed the app, but its threads could not all be erased (%s): run "
                      "python -m bot threads forget-workspace slack %s", team, exc, team)
            return
        pending = f"; {result.remote_pending} remote deletions stay queued for the janitor" \
            if result.remote_pending else ""
        log.info("Slack workspace %s removed the app: its installation is gone and %d threads erased%s",
                 team, result.threads, pending)


@dataclass(frozen=True)
class Access:
    """How the adapter's Bolt app authorizes requests: one token, or installations (with Bolt's OAuth settings)."""

    auth: OneAuthTest | Installed
    installations: RedisInstallations | None = None
    oauth: AsyncOAuthSettings | None = None

    @property
    def authorize(self) -> Callable[..., Awaitable[AuthorizeResult]]:
        """:attr:`auth` as Bolt annotates it (Bolt also takes None from it: "not installed here")."""
        return cast(Callable[..., Awaitable[AuthorizeResult]], self.auth)

    def uninstalls(self, core: Core, in_flight: InFlight) -> Uninstalls:
        revoked = self.auth.forget if isinstance(self.auth, Installed) else None
        return Uninstalls(core, in_flight, self.installations, revoked)


def slack_access(settings: Settings, port: InstallationsPort | None, client: AsyncWebClient,
                 learn: Callable[[AsyncSlackResponse], None], scopes: tuple[str, ...]) -> Access:
    """One workspace's ``SLACK_BOT_TOKEN`` (checked by one ``auth.test`` at start), or with ``SLACK_CLIENT_ID``
    the install flow and each workspace's installation (one-line :class:`ConfigError` when OAuth is half set up)."""
    if not settings.slack_oauth:
        return Access(OneAuthTest(client))
    check_oauth(settings, port)
    assert port is not None  # check_oauth refuses a missing one
    installations = RedisInstallations(port)
    return Access(Installed(installations, learn=learn), installations, oauth_settings(settings, installations, scopes))


__all__ = ["SLACK_LIFECYCLE_EVENTS", "Access", "InstallationsPort", "RedisInstallations", "RedisStates", "Uninstalls",
           "authorize_url", "check_oauth", "oauth_settings", "serve_install_pages", "slack_access", "workspace_of"]
