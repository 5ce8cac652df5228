"""One ``auth.test`` per process, however many requests arrive at once.

Bolt's single-workspace authorization calls ``auth.test`` for each request until its first answer is
cached, so a burst of events arriving together before then (the first minute after a deploy, a Socket
Mode reconnect with a backlog) made one call each: about 100 for 100 events. :class:`OneAuthTest` is
given to Bolt as its ``authorize``: it answers every request from one identity, the one
:meth:`~adapters.slack.app.SlackAdapter.start` already asked for (:meth:`OneAuthTest.remember`), or from
a single call shared by every request that arrives before that (one at a time: a failed call is not
remembered, the next request asks again). Signature checks are untouched: they come before it.

Bolt says at every start that, given ``authorize``, it ignores the token: it does not, the token comes back
from here (``bot.logs.EXPECTED_NOTES`` keeps that line off stderr).

With OAuth (many workspaces, :mod:`adapters.slack.oauth`) :class:`Installed` does the same per workspace: the
token comes from the workspace's installation (one Redis read per request), and each token's ``auth.test`` is
made once per process, shared by the requests that arrive together (Bolt's own installation-store authorize
would call it once per request, or once per token only after a first answer came back).

A request it cannot authorize ends in :class:`Refused`, which :func:`answer_refused` (Bolt's error handler)
answers without a traceback, after the one line logged here: 503 while the installations cannot be read (Redis
down) or ``auth.test`` cannot be reached, so Slack delivers the event again later; 200 and nothing else for a
workspace with no installation here (noted at most once per :data:`NOTE_EVERY` per workspace; Bolt's own line
and its "reinstall" apology to the person are not sent). Logs name a workspace by a digest
(:meth:`~adapters.slack.limits.SlackCalls.scope`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.error import BoltError
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.slack.limits import SlackCalls

log = logging.getLogger("threadkeeper.slack")

NOTE_EVERY = 600.0
"""Seconds between two log lines about events from one workspace that has no installation here."""
UNREACHABLE = (aiohttp.ClientError, TimeoutError, OSError)
"""``auth.test`` failing without an answer from Slack."""


class Refused(Exception):
    """A request not authorized, already logged: :func:`answer_refused` answers it with ``status``."""

    def __init__(self, status: int) -> None:
        super().__init__(f"answered {status}")
        self.status = status


async def answer_refused(error: Exception, logger: logging.Logger) -> BoltResponse | None:
    """Bolt's error handler (``app.error``): a :class:`Refused` request gets its status without a traceback;
    any other error is logged with its traceback, as Bolt's default handler does (and answered 500)."""
    if isinstance(error, Refused):
        return BoltResponse(status=error.status, body="")
    logger.exception("Failed to run a Bolt function (error: %s)", error)
    return None


class OneAuthTest(AsyncAuthorize):
    """Bolt's ``authorize``: the bot's identity from this process's one ``auth.test``."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._identity: asyncio.Future[AsyncSlackResponse] | None = None

    def remember(self, identity: AsyncSlackResponse) -> None:
        """The answer of the ``auth.test`` the adapter made at start: every request is authorized from it."""
        done: asyncio.Future[AsyncSlackResponse] = asyncio.get_running_loop().create_future()
        done.set_result(identity)
        self._identity = done

    async def identity(self) -> AsyncSlackResponse:
        known = self._identity
        if known is None or (known.done() and (known.cancelled() or known.exception() is not None)):
            known = self._identity = asyncio.ensure_future(self.client.auth_test())
        return await asyncio.shield(known)

    async def __call__(self, *, context: Any, enterprise_id: str | None, team_id: str | None, user_id: str | None,
                       actor_enterprise_id: str | None = None, actor_team_id: str | None = None,
                       actor_user_id: str | None = None) -> AuthorizeResult:
        identity = await self.identity()
        return AuthorizeResult.from_auth_test_response(
            auth_test_response=identity,
            bot_token=self.client.token,
            bot_scopes=identity.headers.get("x-oauth-scopes"),
        )


class Installed(AsyncAuthorize):
    """Bolt's ``authorize`` with OAuth: the workspace's installation, and one ``auth.test`` per token."""

    def __init__(self, installations: AsyncInstallationStore,
                 learn: Callable[[AsyncSlackResponse], None] | None = None) -> None:
        self.installations = installations
        self.learn = learn
        """Told each token's identity once (the bot's user and bot ids in that workspace)."""
        self._identities: dict[str, asyncio.Future[AsyncSlackResponse]] = {}
        self._noted: dict[str, float] = {}
        """Workspace digest -> when the next line about its missing installation may be logged."""

    def forget(self, team: str) -> None:
        """A workspace that uninstalled the app: what was learned of its token goes (a next request asks again)."""
        for token, known in list(self._identities.items()):
            if known.done() and not known.cancelled() and known.exception() is None \
                    and known.result().get("team_id") == team:
                del self._identities[token]

    async def _identity(self, client: AsyncWebClient, token: str) -> AsyncSlackResponse:
        known = self._identities.get(token)
        if known is None or (known.done() and (known.cancelled() or known.exception() is not None)):
            known = self._identities[token] = asyncio.ensure_future(client.auth_test(token=token))
            known.add_done_callback(self._told)
        return await asyncio.shield(known)

    def _told(self, done: asyncio.Future[AsyncSlackResponse]) -> None:
        if self.learn is not None and not done.cancelled() and done.exception() is None:
            self.learn(done.result())

    def _not_installed(self, where: str) -> None:
        """One line per workspace per :data:`NOTE_EVERY` (Slack keeps sending a workspace's events for a while)."""
        now = time.monotonic()
        if now < self._noted.get(where, 0.0):
            return
        if len(self._noted) > 1000:
            self._noted = {w: until for w, until in self._noted.items() if until > now}
        self._noted[where] = now + NOTE_EVERY
        log.warning("events from Slack workspace %s, which has no installation here, are ignored (install the app "
                    "there through /slack/install); next note in %.0f s", where, NOTE_EVERY)

    async def __call__(self, *, context: Any, enterprise_id: str | None, team_id: str | None, user_id: str | None,
                       actor_enterprise_id: str | None = None, actor_team_id: str | None = None,
                       actor_user_id: str | None = None) -> AuthorizeResult:
        where = SlackCalls.scope(team_id or enterprise_id or "")
        try:
            bot = await self.installations.async_find_bot(enterprise_id=enterprise_id, team_id=team_id,
                                                          is_enterprise_install=context.is_enterprise_install)
        except BoltError as exc:
            log.warning("a request from Slack workspace %s answered 503 (Slack sends it again): its installation "
                        "could not be read (%s)", where, exc)
            raise Refused(503) from None
        if bot is None:
            self._not_installed(where)
            raise Refused(200)
        try:
            identity = await self._identity(context.client, bot.bot_token)
        except SlackApiError as exc:
            log.warning("Slack refused the installed token of workspace %s (%s): ignored until it installs the "
                        "app again", where, exc.response.get("error"))
            raise Refused(200) from None
        except UNREACHABLE as exc:
            log.warning("a request from Slack workspace %s answered 503 (Slack sends it again): auth.test could "
                        "not be reached (%s)", where, type(exc).__name__)
            raise Refused(503) from None
        return AuthorizeResult.from_auth_test_response(auth_test_response=identity, bot_token=bot.bot_token,
                                                       bot_scopes=bot.bot_scopes)
