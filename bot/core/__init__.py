"""The core: the message path, allowlists and the one deleter. Knows no platform."""

from bot.core.deleter import Deleter, Outcome
from bot.core.message_path import Core
from bot.core.policy import Policy

__all__ = ["Core", "Deleter", "Outcome", "Policy"]
