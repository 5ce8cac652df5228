"""The Slack adapter: :mod:`~adapters.slack.app` (Bolt app, transport, listeners),
:mod:`~adapters.slack.parse` (payloads -> :class:`~bot.domain.Incoming`), :mod:`~adapters.slack.reply`
(streaming an answer into Slack) and :mod:`~adapters.slack.mrkdwn` (Markdown -> Slack mrkdwn).
"""

from adapters.slack.app import (
    SLACK_ASSISTANT_EVENTS,
    SLACK_BOT_SCOPES,
    SLACK_COMMANDS,
    SLACK_EVENTS,
    SlackAdapter,
    run,
)

__all__ = ["SLACK_ASSISTANT_EVENTS", "SLACK_BOT_SCOPES", "SLACK_COMMANDS", "SLACK_EVENTS", "SlackAdapter", "run"]
