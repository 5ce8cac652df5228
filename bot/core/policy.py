"""Allowlists: where the bot may answer at all."""

from __future__ import annotations

from bot.config import Settings
from bot.domain import Incoming


class Policy:
    def __init__(self, settings: Settings) -> None:
        self.workspaces = {"slack": settings.allowed_slack_teams, "discord": settings.allowed_discord_guilds}
        self.channels = {"slack": settings.allowed_slack_channels, "discord": settings.allowed_discord_channels}

    def allows(self, msg: Incoming) -> bool:
        """The workspace allowlist applies to everything but Discord DMs; channel lists spare DMs."""
        key = msg.key
        workspaces = self.workspaces.get(key.platform)
        if workspaces and key.workspace != "dm" and key.workspace not in workspaces:
            return False
        channels = self.channels.get(key.platform)
        channel = key.channel.split("/", 1)[0]
        return not (channels and not msg.is_dm and channel not in channels)
