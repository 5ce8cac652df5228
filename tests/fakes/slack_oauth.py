"""The fake Slack's half of the install flow (OAuth v2): consent codes and ``oauth.v2.access``.

A test plays the person who clicks "Allow" on Slack's consent page with :meth:`FakeOAuth.grant`, which gives
the one-time ``code`` Slack would append to the redirect URL; the bot then exchanges it at ``oauth.v2.access``
(HTTP Basic auth with the app's client id and secret, as slack_sdk sends them) for a bot token of that team.
The answer has the real shape; a code that was never granted, or used already, gets ``invalid_code``, and
wrong credentials ``invalid_client_id`` / ``bad_client_secret``. Every token handed out is
registered with its team (:attr:`FakeSlack.token_teams`), so ``auth.test`` answers for that team and the
calls made with it can be told apart.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

CLIENT_ID = "1111111111.2222222222"
CLIENT_SECRET = "fake-client-secret-0123456789abcdef"


@dataclass
class Grant:
    team_id: str
    team_name: str
    user_id: str
    scopes: tuple[str, ...]


@dataclass
class FakeOAuth:
    """Codes granted on the (imagined) consent page, and the bot tokens they were exchanged for."""

    token_teams: dict[str, str]
    """The fake Slack's token -> team map, shared: tokens issued here belong to their team."""
    bot_user_id: str
    app_id: str
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    codes: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    """team id -> the bot token last issued for it."""

    def grant(self, team_id: str, *, team_name: str = "", user_id: str = "U0INSTALLER",
              scopes: tuple[str, ...] = ()) -> str:
        """Someone in ``team_id`` allows the app: the code Slack puts on the redirect URL."""
        code = f"{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        self.codes[code] = Grant(team_id, team_name or f"Team {team_id}", user_id, scopes)
        return code

    def access(self, payload: JSON, authorization: str) -> JSON:
        """``oauth.v2.access``: a code for a bot token, once."""
        client_id, client_secret = _basic(authorization) or (payload.get("client_id"), payload.get("client_secret"))
        if client_id != self.client_id:
            return {"ok": False, "error": "invalid_client_id"}
        if client_secret != self.client_secret:
            return {"ok": False, "error": "bad_client_secret"}
        grant = self.codes.pop(str(payload.get("code") or ""), None)
        if grant is None:
            return {"ok": False, "error": "invalid_code"}
        token = f"xoxb-{grant.team_id}-{secrets.token_hex(12)}"
        self.token_teams[token] = grant.team_id
        self.tokens[grant.team_id] = token
        return {"ok": True, "access_token": token, "token_type": "bot", "scope": ",".join(grant.scopes),
                "bot_user_id": self.bot_user_id, "app_id": self.app_id,
                "team": {"id": grant.team_id, "name": grant.team_name}, "enterprise": None,
                "authed_user": {"id": grant.user_id}, "is_enterprise_install": False}


def _basic(authorization: str) -> tuple[str, str] | None:
    if not authorization.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
    return user, password
