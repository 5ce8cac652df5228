"""Feedback buttons under every finished Slack answer, and their clicks.

The answer's last message ends with a ``context_actions`` block holding a ``feedback_buttons`` element
(action id :data:`FEEDBACK_ACTION`): on the stream's ``chat.stopStream``, or after the text's sections
when the answer was posted. The block id carries the thread's one-way digest, so a click names its
thread without naming anyone. A click (a ``block_actions`` payload) is acknowledged at once; the
count (:func:`bot.core.feedback.record_feedback`) and the private thank-you (``response_url``, else
``chat.postEphemeral``) follow in a task of the adapter's own.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from adapters.kit.tasks import InFlight
from adapters.kit.text import split_text
from adapters.slack.limits import SlackCalls, answer_clicker
from bot.core import Core
from bot.core.feedback import record_feedback
from bot.errors import BotError

log = logging.getLogger("threadkeeper.slack")

FEEDBACK_ACTION = "tk_feedback"
BLOCK_PREFIX = "tk-feedback:"
SECTION_LIMIT = 3000
"""Slack's limit on a section block's text."""
THANKS = {"positive": "Thanks for the feedback! Glad that helped.",
          "negative": "Thanks for the feedback! I'll take it into account."}


def feedback_blocks(digest: str, text: str | None) -> list[dict[str, Any]]:
    """The blocks an answer's last message ends with: ``text`` (mrkdwn) in sections, if any, then the buttons."""
    sections = [{"type": "section", "text": {"type": "mrkdwn", "text": part}}
                for part in (split_text(text, SECTION_LIMIT) if text else [])]
    buttons = {
        "type": "feedback_buttons",
        "action_id": FEEDBACK_ACTION,
        "positive_button": {"text": {"type": "plain_text", "text": "Good response"}, "value": "positive",
                            "accessibility_label": "Mark this response as good"},
        "negative_button": {"text": {"type": "plain_text", "text": "Bad response"}, "value": "negative",
                            "accessibility_label": "Mark this response as bad"},
    }
    return [*sections, {"type": "context_actions", "block_id": BLOCK_PREFIX + digest, "elements": [buttons]}]


class SlackFeedback:
    """Listens for the buttons' clicks on a Bolt app; counts them and thanks the clicker privately."""

    def __init__(self, core: Core, calls: SlackCalls, in_flight: InFlight) -> None:
        self.core = core
        self.calls = calls
        self.in_flight = in_flight

    def register(self, app: AsyncApp) -> None:
        app.action(FEEDBACK_ACTION)(self._on_click)

    async def _on_click(self, ack: Any, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        self.in_flight.spawn(self._record(body, context.client))

    async def _record(self, body: dict[str, Any], client: AsyncWebClient) -> None:
        """Count the click, then thank the clicker with the token of their workspace (``client``)."""
        actions = body.get("actions") or []
        action: dict[str, Any] = next((a for a in actions if a.get("action_id") == FEEDBACK_ACTION), {})
        value = str(action.get("value") or "")
        digest = str(action.get("block_id") or "").removeprefix(BLOCK_PREFIX) or "-"
        container = body.get("container") or {}
        channel = str(container.get("channel_id") or (body.get("channel") or {}).get("id") or "")
        message = f"{channel}:{container.get('message_ts') or '-'}"
        try:
            counted = await record_feedback(self.core, "slack", value, digest=digest, message=message)
        except BotError as exc:
            log.warning("could not keep the feedback on %s: %s", message, exc)
            counted = True  # the metric counted it: still thank them
        if counted:
            await answer_clicker(self.calls, body, THANKS[value], client, kind="feedback", replace=False,
                                 failed="could not thank for feedback")
