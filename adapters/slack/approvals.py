"""Approval prompts for tool calls in Slack, and their clicks.

When a tool call needs the asker's approval (:mod:`bot.core.approvals`), the asker alone gets an ephemeral
message in the thread (``chat.postEphemeral``, paced like every call): the server, the tool and a short,
escaped rendering of its arguments (:mod:`adapters.kit.approvals`), and Approve / Decline buttons whose
value is the approval's random token. A click (``block_actions``) is acknowledged at once; the decision
is recorded in a task of the adapter's own, by whichever worker got it (the store checks the clicker is
the asker, and takes one decision only), and the prompt is replaced through the click's ``response_url``
by what was decided, or the clicker is told privately why nothing changed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.kit.approvals import FAILED, GONE, NOT_YOURS, decided_text, parts
from adapters.kit.tasks import InFlight
from adapters.slack.limits import SlackCalls, answer_clicker
from adapters.slack.parse import Target
from bot.core import Core
from bot.domain import AskApproval, ToolApproval
from bot.errors import BotError

log = logging.getLogger("threadkeeper.slack")

APPROVE_ACTION = "tk_approval_yes"
DECLINE_ACTION = "tk_approval_no"
ACTIONS = re.compile(r"^tk_approval_(yes|no)$")
BLOCK_ID = "tk-approval"


def _escape(text: str) -> str:
    """Slack's three escapes: no ``<@U…>``, ``<!here>`` or link survives in what the model wrote."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def approval_message(request: ToolApproval) -> tuple[str, list[dict[str, Any]]]:
    """The prompt's text (also the notification's) and its blocks: the question, then the two buttons."""
    server, tool, arguments = (_escape(p) for p in parts(request))
    text = f"Approve a tool call? `{server}` wants to run `{tool}` with `{arguments}`"
    buttons = [
        {"type": "button", "action_id": APPROVE_ACTION, "style": "primary", "value": request.token,
         "text": {"type": "plain_text", "text": "Approve"}},
        {"type": "button", "action_id": DECLINE_ACTION, "style": "danger", "value": request.token,
         "text": {"type": "plain_text", "text": "Decline"}},
    ]
    return text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
                  {"type": "actions", "block_id": BLOCK_ID, "elements": buttons}]


class SlackApprovals:
    """Shows the prompts of this worker's answers; records the clicks on anyone's."""

    def __init__(self, core: Core, calls: SlackCalls, in_flight: InFlight) -> None:
        self.core = core
        self.calls = calls
        self.in_flight = in_flight

    def register(self, app: AsyncApp) -> None:
        app.action(ACTIONS)(self._on_click)

    def prompter(self, target: Target, digest: str, client: AsyncWebClient) -> AskApproval:
        """What the core calls to show ``target.user`` (the asker) a prompt, in the answer's thread (``client``: the
        token of the answer's workspace)."""
        async def ask(request: ToolApproval) -> None:
            text, blocks = approval_message(request)

            def post() -> Awaitable[AsyncSlackResponse]:
                return client.chat_postEphemeral(channel=target.channel, user=target.user, text=text,
                                                 blocks=blocks, thread_ts=target.thread_ts)

            await self.calls.urgent(self.calls.delivery(target.team, digest), "chat.postEphemeral", post,
                                    channel=target.channel)

        return ask

    async def _on_click(self, ack: Any, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        self.in_flight.spawn(self._decide(body, context.client))

    async def _decide(self, body: dict[str, Any], client: AsyncWebClient) -> None:
        action: dict[str, Any] = next((a for a in body.get("actions") or []
                                       if ACTIONS.match(str(a.get("action_id") or ""))), {})
        approve = action.get("action_id") == APPROVE_ACTION
        user = str((body.get("user") or {}).get("id") or "")
        try:
            outcome, label = await self.core.approvals.decide("slack", str(action.get("value") or ""), user, approve)
        except BotError as exc:
            log.warning("could not record an approval click: %s", exc)
            await self._answer(body, FAILED, client, replace=False)
            return
        if outcome == "decided":
            text = _escape(decided_text("approved" if approve else "declined", label))  # the label is the MCP server's
            await self._answer(body, text, client, replace=True)
        elif outcome == "not_yours":
            log.info("refused an approval click by someone other than the asker")
            await self._answer(body, NOT_YOURS, client, replace=False)
        else:
            await self._answer(body, GONE, client, replace=True)

    async def _answer(self, body: dict[str, Any], text: str, client: AsyncWebClient, *, replace: bool) -> None:
        """The clicker alone sees ``text``: the prompt replaced by it (``replace``), or a line of its own."""
        await answer_clicker(self.calls, body, text, client, kind="approval", replace=replace,
                             failed="could not answer an approval click")
