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
"""

from __future__ import annotations

import asyncio
from typing import Any

from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse


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
