"""The errors the core raises to adapters: each carries one short sentence meant for the user.

Details go to the exception text (for logs); :attr:`BotError.user_message` is what a person sees.
"""

from __future__ import annotations


class BotError(Exception):
    """An error with a sentence fit for the user; details go to the log."""

    user_message = "Sorry, something went wrong. Please try again."

    def __init__(self, detail: str = "", user_message: str | None = None) -> None:
        super().__init__(detail or self.user_message)
        if user_message is not None:
            self.user_message = user_message


class Misconfigured(BotError):
    user_message = "The assistant is not configured correctly; the operator has been told."


class Unavailable(BotError):
    user_message = "The assistant is temporarily unavailable, please try again in a moment."


class RateLimited(BotError):
    user_message = "You're sending messages faster than I can answer. Please wait a little and try again."


class TooLong(BotError):
    user_message = "That message is too long for me. Please shorten it and try again."


class BudgetExceeded(BotError):
    user_message = "You've used today's assistant budget. It resets at midnight UTC."


class NotAllowed(BotError):
    user_message = "Sorry, I'm not enabled here."
