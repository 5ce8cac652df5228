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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

log = logging.getLogger("threadkeeper.slack")


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
        if self._identity is None or (self._identity.done() and self._identity.exception() is not None):
            self._identity = asyncio.ensure_future(self.client.auth_test())
        return await asyncio.shield(self._identity)

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

    def forget(self, token: str) -> None:
        """A revoked token: the next request with it (if any) asks again."""
        self._identities.pop(token, None)

    async def _identity(self, client: AsyncWebClient, token: str) -> AsyncSlackResponse:
        known = self._identities.get(token)
        if known is None or (known.done() and known.exception() is not None):
            known = self._identities[token] = asyncio.ensure_future(client.auth_test(token=token))
            known.add_done_callback(self._told)
        return await asyncio.shield(known)

    def _told(self, done: asyncio.Future[AsyncSlackResponse]) -> None:
        if self.learn is not None and not done.cancelled() and done.exception() is None:
            self.learn(done.result())

    async def __call__(self, *, context: Any, enterprise_id: str | None, team_id: str | None, user_id: str | None,
                       actor_enterprise_id: str | None = None, actor_team_id: str | None = None,
                       actor_user_id: str | None = None) -> AuthorizeResult | None:
        bot = await self.installations.async_find_bot(enterprise_id=enterprise_id, team_id=team_id,
                                                      is_enterprise_install=context.is_enterprise_install)
        if bot is None:
            log.warning("an event from Slack workspace %s, which has no installation here: ignored (install the "
                        "app there through /slack/install)", team_id)
            return None
        try:
            identity = await self._identity(context.client, bot.bot_token)
        except SlackApiError as exc:
            log.warning("Slack refused the installed token of workspace %s (%s): ignored until it installs the "
                        "app again", team_id, exc.response.get("error"))
            return None
        return AuthorizeResult.from_auth_test_response(auth_test_response=identity, bot_token=bot.bot_token,
                                                       bot_scopes=bot.bot_scopes)
