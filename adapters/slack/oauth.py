"""Installing the bot in many Slack workspaces: Bolt's install flow (OAuth v2) on the installations in Redis.

With ``SLACK_CLIENT_ID`` and ``SLACK_CLIENT_SECRET`` set, HTTP mode serves Bolt's :class:`AsyncOAuthFlow`:

* ``GET /slack/install`` issues a state (kept in Redis for :data:`STATE_TTL`, and in a cookie of the
  installer's browser) and redirects (302) to Slack's authorize page with the manifest's scopes
  (``SLACK_BOT_SCOPES``). The page is on ``SLACK_API_URL``'s host when that is set (GovSlack, a proxy, the
  tests' fake), else slack.com.
* ``GET /slack/oauth_redirect?code=…&state=…`` consumes the state (once; any worker can, since it is in
  Redis), exchanges the code at ``oauth.v2.access`` and keeps the installation, sealed with
  ``TOKEN_ENCRYPTION_KEY`` (:mod:`bot.store.installations`). Failures (a state that is unknown, used or
  expired, a code Slack refuses, the installation not stored) get Bolt's page naming the reason, and a WARNING
  line here naming a reason Bolt knows (never what the redirect said, nor the code).
* Either page answers a short 503 page, and one log line, while Redis (or Slack) cannot be reached.

Bolt's line about a refused code carries the code: it is filtered off the app's logger, which the flow logs
through (:meth:`Access.register`), and off :data:`FLOW_LOG`.

The events of each workspace are then authorized from its installation (:class:`adapters.slack.auth.Installed`).
One installation is kept per workspace (an org-wide install: per enterprise), the bot's: the app asks for no
user scopes, and token rotation stays off (``token_rotation_enabled: false`` in the manifest).
"""

from __future__ import annotations

import asyncio
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
from slack_bolt.error import BoltError
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncFailureArgs, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.kit.tasks import InFlight
from adapters.slack.auth import UNREACHABLE, Installed, OneAuthTest, answer_refused
from adapters.slack.context import SlackContext
from adapters.slack.limits import SlackCalls
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
    "storage_error": "the installation could not be stored (Redis unavailable): start again at /slack/install",
}
"""What each reason Bolt reports means, for the log line (any other reason is logged as ``unknown``)."""

UNAVAILABLE_PAGE = ("<html><body><h1>Try again in a moment</h1><p>The installation cannot be handled right now. "
                    "Please start again at /slack/install in a few minutes.</p></body></html>")


class _NoOAuthCode(logging.Filter):
    """Drops Bolt's line about a refused code: it carries the code (ours says why, without it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to fetch oauth.v2.access result with code")


FLOW_LOG = logging.getLogger("threadkeeper.slack.oauth")
"""The logger of Bolt's OAuth settings and of the state and installation stores here. The flow itself logs
through the app's logger, which :meth:`Access.register` filters the same way."""
FLOW_LOG.addFilter(_NoOAuthCode())


class InstallationsPort(Protocol):
    """What this module needs of ``bot.store.installations.Installations`` (adapters never import the store)."""

    async def save(self, platform: str, workspace: str, record: dict[str, Any]) -> None:
        """Every method raises :class:`~bot.errors.Unavailable` when the store cannot be reached."""
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


class StoreDown(BoltError):
    """The installations could not be read or written (Redis unavailable): a BoltError, so Bolt's flow answers its
    ``storage_error`` page, and the authorizer a 503."""


class RedisInstallations(AsyncInstallationStore):
    """Bolt's installation store on the installations port: one bot installation per workspace."""

    def __init__(self, port: InstallationsPort) -> None:
        self.port = port

    @property
    def logger(self) -> logging.Logger:
        return FLOW_LOG

    async def async_save(self, installation: Installation) -> None:
        record = {name: getattr(installation, name) for name in _FIELDS}
        record["bot_scopes"] = list(installation.bot_scopes or [])
        workspace = workspace_of(installation.enterprise_id, installation.team_id, installation.is_enterprise_install)
        try:
            await self.port.save(PLATFORM, workspace, record)
        except BotError as exc:
            raise StoreDown(str(exc)) from None

    async def async_save_bot(self, bot: Bot) -> None:
        """Only Bolt's token rotation saves a bot alone, and rotation stays off: nothing to keep apart."""

    async def _record(self, enterprise_id: str | None, team_id: str | None,
                      is_enterprise_install: bool | None) -> dict[str, Any] | None:
        try:
            return await self.port.find(PLATFORM, workspace_of(enterprise_id, team_id, is_enterprise_install))
        except BotError as exc:
            raise StoreDown(str(exc)) from None

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
        """The bot's token is the installation (bot only): deleting one deletes the other."""
        await self.async_delete_installation(enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                        user_id: str | None = None) -> None:
        if user_id is None:  # a user's own token is never kept: only the workspace's installation goes
            try:
                await self.port.delete(PLATFORM, workspace_of(enterprise_id, team_id, team_id is None))
            except BotError as exc:
                raise StoreDown(str(exc)) from None

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        """One delete (Bolt's would delete the bot, then the installation: the same record twice)."""
        await self.async_delete_installation(enterprise_id=enterprise_id, team_id=team_id)


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
        return FLOW_LOG

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(32)
        await self.port.issue_state(state, self.ttl)
        return state

    async def async_consume(self, state: str) -> bool:
        """A state that cannot be checked (Redis unavailable) is not consumed: the page handler answers 503."""
        return bool(state) and await self.port.consume_state(state)


async def _installed(args: AsyncSuccessArgs) -> BoltResponse:
    found = args.installation
    log.info("Slack app installed in workspace %s", SlackCalls.scope(workspace_of(
        found.enterprise_id, found.team_id, found.is_enterprise_install)))
    return await args.default.success(args)


async def _failed(args: AsyncFailureArgs) -> BoltResponse:
    """One line; the reason only when it is one of Bolt's (``?error=`` on the redirect is anyone's text)."""
    reason = args.reason if args.reason in FAILURES else "unknown"
    log.warning("a Slack install failed (%s): %s", reason, FAILURES.get(reason, "the redirect named an error "
                                                                              "Slack does not send"))
    if reason == "storage_error":
        return _unavailable_page()
    return await args.default.failure(args)


def _unavailable_page() -> BoltResponse:
    return BoltResponse(status=503, body=UNAVAILABLE_PAGE, headers={"Content-Type": "text/html; charset=utf-8"})


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
        callback_options=AsyncCallbackOptions(success=_installed, failure=_failed), logger=FLOW_LOG,
    )


@dataclass(frozen=True, slots=True)
class Problem:
    """Something that keeps Slack OAuth from working: start-up refuses with :attr:`text`, ``doctor`` shows it on
    its :attr:`piece` line (:mod:`adapters.slack.oauth_doctor`)."""

    piece: str
    text: str
    """One line, no secret; after a ``;``, how to fix it."""


def oauth_problems(settings: Settings) -> list[Problem]:
    """What OAuth needs and lacks, in the order start-up checks it: both halves of the app's credentials, HTTP
    mode (the install pages are web pages), no single token beside them, a usable encryption key, and a Redis
    server (installations must outlive a restart; any worker may finish an install another began)."""
    found: list[Problem] = []
    if not settings.slack_client_id or not secret(settings.slack_client_secret):
        missing = "SLACK_CLIENT_SECRET" if settings.slack_client_id else "SLACK_CLIENT_ID"
        found.append(Problem("slack oauth", f"{missing} is required for Slack OAuth (SLACK_CLIENT_ID and "
                             "SLACK_CLIENT_SECRET go together); set both from Basic Information -> App Credentials"))
    if secret(settings.slack_app_token):
        found.append(Problem("slack http", "SLACK_APP_TOKEN: Slack OAuth serves its install pages in HTTP mode; "
                             "unset SLACK_APP_TOKEN and give Slack a public https address (slack-manifest.yml)"))
    if secret(settings.slack_bot_token):
        found.append(Problem("slack token", "SLACK_BOT_TOKEN: with SLACK_CLIENT_ID set, each workspace's token "
                             "comes from its installation; unset SLACK_BOT_TOKEN (or SLACK_CLIENT_ID for one "
                             "workspace)"))
    key = secret(settings.token_encryption_key)
    try:
        if key is None:
            raise ConfigError(f"TOKEN_ENCRYPTION_KEY is required for Slack OAuth (bot tokens are kept encrypted in "
                              f"Redis); {KEY_HINT}")
        Sealer(key)
    except ConfigError as exc:
        found.append(Problem("slack oauth key", str(exc)))
    if not settings.redis_url:
        found.append(Problem("slack installs", "REDIS_URL is required for Slack OAuth (installations must outlive a "
                             "restart, and any worker may finish an install another began); set REDIS_URL"))
    return found


def check_oauth(settings: Settings) -> None:
    """One-line :class:`ConfigError` (the first of :func:`oauth_problems`) unless OAuth is set up completely."""
    problems = oauth_problems(settings)
    if problems:
        raise ConfigError(problems[0].text)


def serve_install_pages(web_app: web.Application, flow: AsyncOAuthFlow) -> None:
    """``GET /slack/install`` and ``GET /slack/oauth_redirect``, answered by Bolt's flow."""

    async def answer(page: str, handle: Callable[[AsyncBoltRequest], Awaitable[BoltResponse]],
                     request: web.Request) -> web.Response:
        try:
            response = await handle(await to_bolt_request(request))
        except (BotError, BoltError, *UNREACHABLE) as exc:
            log.warning("%s answered 503: %s (%s)", page, "Redis is unavailable" if isinstance(
                exc, BotError | BoltError) else "Slack cannot be reached", type(exc).__name__)
            response = _unavailable_page()
        return await to_aiohttp_response(response)

    async def install(request: web.Request) -> web.Response:
        return await answer(flow.install_path, flow.handle_installation, request)

    async def redirect(request: web.Request) -> web.Response:
        return await answer(flow.redirect_uri_path, flow.handle_callback, request)

    web_app.router.add_get(flow.install_path, install)
    web_app.router.add_get(flow.redirect_uri_path, redirect)


class Uninstalls:
    """``app_uninstalled`` and ``tokens_revoked`` (of the bot's token): every thread of the workspace is erased
    through the core's one deleter, then its installation (:meth:`bot.core.Core.erase_workspace`, as
    ``threads forget-workspace slack T…`` does), and what this process remembers of it (names, threads read,
    its token's identity) is dropped.

    Acknowledged at once; the erasing runs in a task of the adapter's own, one per workspace at a time (Slack sends
    both events on an uninstall). Slack does not send them again, so the erasure is marked in Redis before it
    begins: cut short (a deploy, a crash), the janitor finishes it. When Redis fails, one ERROR line names the
    command that finishes it.
    """

    def __init__(self, core: Core, in_flight: InFlight, context: SlackContext, installations: bool = False,
                 revoked: Callable[[str], None] | None = None) -> None:
        self.core = core
        self.in_flight = in_flight
        self.context = context
        self.installations = installations
        """Whether workspaces are installed here (OAuth): their installation goes too."""
        self.revoked = revoked
        """Told the workspace that left (the authorizer forgets what it knew of its token)."""
        self._erasing: dict[str, asyncio.Task[None]] = {}

    def register(self, app: AsyncApp) -> None:
        app.event("app_uninstalled")(self._on_event)
        app.event("tokens_revoked")(self._on_event)

    async def _on_event(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        event = body.get("event") or {}
        if event.get("type") == "tokens_revoked" and not (event.get("tokens") or {}).get("bot"):
            return  # only people's own tokens, which the app never keeps
        team = str(body.get("team_id") or context.team_id or "")
        enterprise = body.get("enterprise_id") or context.enterprise_id
        if team and team not in self._erasing:
            org_wide = bool(context.is_enterprise_install)
            self._erasing[team] = self.in_flight.spawn(self.erase(team, enterprise, org_wide))

    async def erase(self, team: str, enterprise: str | None, org_wide: bool) -> None:
        where = SlackCalls.scope(team)
        installation = workspace_of(enterprise, None if org_wide else team, org_wide) if self.installations else None
        try:
            result = await self.core.erase_workspace(PLATFORM, team, installation)
        except BotError as exc:
            log.error("Slack workspace %s removed the app, but its threads could not all be erased (%s): run "
                      "python -m bot threads forget-workspace slack %s", where, exc, team)
            return
        finally:
            self._erasing.pop(team, None)
            if self.revoked is not None:
                self.revoked(team)
            self.context.forget_team(team)
        pending = f"; {result.remote_pending} remote deletions stay queued for the janitor" \
            if result.remote_pending else ""
        gone = "its installation is gone and " if result.installation else ""
        log.info("Slack workspace %s removed the app: %s%d threads erased%s", where, gone, result.threads, pending)


@dataclass(frozen=True)
class Access:
    """How the adapter's Bolt app authorizes requests: one token, or installations (with Bolt's OAuth settings)."""

    auth: OneAuthTest | Installed
    installations: RedisInstallations | None = None
    oauth: AsyncOAuthSettings | None = None

    @property
    def authorize(self) -> Callable[..., Awaitable[AuthorizeResult]]:
        """:attr:`auth` as Bolt annotates it (what it refuses ends in :class:`~adapters.slack.auth.Refused`)."""
        return cast(Callable[..., Awaitable[AuthorizeResult]], self.auth)

    def register(self, app: AsyncApp, core: Core, in_flight: InFlight, context: SlackContext) -> None:
        """The uninstall events (:class:`Uninstalls`), and Bolt's error handler: a request the authorizer refused
        is answered without a traceback (:func:`~adapters.slack.auth.answer_refused`); Bolt's line that carries an
        OAuth code is dropped from the app's logger, which its install flow logs through."""
        revoked = self.auth.forget if isinstance(self.auth, Installed) else None
        Uninstalls(core, in_flight, context, self.installations is not None, revoked).register(app)
        app.error(answer_refused)
        if not any(isinstance(f, _NoOAuthCode) for f in app.logger.filters):
            app.logger.addFilter(_NoOAuthCode())


def slack_access(settings: Settings, port: InstallationsPort | None, client: AsyncWebClient,
                 learn: Callable[[AsyncSlackResponse], None], scopes: tuple[str, ...]) -> Access:
    """One workspace's ``SLACK_BOT_TOKEN`` (checked by one ``auth.test`` at start), or with ``SLACK_CLIENT_ID``
    the install flow and each workspace's installation (one-line :class:`ConfigError` when OAuth is half set up)."""
    if not settings.slack_oauth:
        return Access(OneAuthTest(client))
    check_oauth(settings)
    assert port is not None  # the runtime makes it whenever the key is usable, which check_oauth checked
    installations = RedisInstallations(port)
    return Access(Installed(installations, learn=learn), installations, oauth_settings(settings, installations, scopes))


__all__ = ["SLACK_LIFECYCLE_EVENTS", "Access", "InstallationsPort", "Problem", "RedisInstallations", "RedisStates",
           "Uninstalls", "authorize_url", "check_oauth", "oauth_problems", "oauth_settings", "serve_install_pages",
           "slack_access", "workspace_of"]
