"""Provider errors -> the errors the core acts on.

The SDK has already retried connection errors, 408/409/429 and 5xx (with
backoff, honouring ``retry-after``) by the time anything lands here, so every
translation is final for this message.
"""

from __future__ import annotations

import logging

import openai

from bot.assistants.base import ContextOverflow
from bot.errors import BotError, Misconfigured, Unavailable

log = logging.getLogger("threadkeeper.assistant")

TIMEOUT_SENTENCE = "The assistant took too long to answer. Please try again."
BUSY_SENTENCE = "The assistant is busy right now. Please try again in a minute."


def translate(exc: openai.APIError, *, what: str) -> Exception:
    """Map an SDK error to Misconfigured, Unavailable, ContextOverflow or BotError, and log it once."""
    code = exc.code
    status = getattr(exc, "status_code", None)
    if isinstance(exc, openai.APITimeoutError):
        log.warning("%s timed out", what)
        return Unavailable(f"{what}: timeout", TIMEOUT_SENTENCE)
    if isinstance(exc, openai.APIConnectionError):
        log.warning("%s: cannot reach the assistant server: %s", what, exc)
        return Unavailable(f"{what}: connection error")
    if code == "context_length_exceeded":
        return ContextOverflow(str(exc))
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        log.error("%s: the assistant server refused our credentials (%s): check OPENAI_API_KEY", what, status)
        return Misconfigured(f"{what}: {status}")
    if isinstance(exc, openai.NotFoundError):
        if code == "model_not_found":
            log.error("%s: model not found: check OPENAI_MODEL (%s)", what, exc.message)
        else:
            log.error("%s: 404 from the assistant server: check OPENAI_BASE_URL and ASSISTANT_BACKEND (%s)", what, exc)
        return Misconfigured(f"{what}: 404 {code}")
    if isinstance(exc, openai.RateLimitError):
        if code == "insufficient_quota":
            log.error("%s: the OpenAI account is out of quota", what)
            return Misconfigured(f"{what}: insufficient_quota")
        log.warning("%s: rate limited after retries", what)
        return Unavailable(f"{what}: 429", BUSY_SENTENCE)
    if isinstance(exc, openai.InternalServerError) or (status is not None and status >= 500):
        log.warning("%s: server error %s after retries", what, status)
        return Unavailable(f"{what}: {status}")
    log.error("%s failed: %s %s: %s", what, status, code, exc)
    return BotError(f"{what}: {status} {code}")

