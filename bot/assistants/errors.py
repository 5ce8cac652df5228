"""Provider errors -> the errors the core acts on.

The SDK has already retried connection errors, 408/409/429 and 5xx (with
backoff, honouring ``retry-after``) by the time anything lands here, so every
translation is final for this message.

Real servers word the same failure in many shapes (OpenAI's ``code``,
llama.cpp's ``type``, FastAPI's ``{"detail": "..."}`` that the SDK leaves in
``exc.body`` only), so the recognisers below look at the code, the type and
the words of the whole error.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import openai
import pydantic

from bot.assistants.base import ContextOverflow
from bot.errors import BotError, Misconfigured, Unavailable

log = logging.getLogger("threadkeeper.assistant")

TIMEOUT_SENTENCE = "The assistant took too long to answer. Please try again."
BUSY_SENTENCE = "The assistant is busy right now. Please try again in a minute."
BROKEN_SENTENCE = "The assistant sent back an empty or broken answer. Please try again."
UNREACHABLE_SENTENCE = "I can't reach the assistant right now. Please try again in a moment."
LOCKED_SENTENCE = "I'm still working on your previous message in this conversation. Please try again in a moment."

BROKEN_BODY = (json.JSONDecodeError, pydantic.ValidationError)
"""What the SDK raises (not an ``openai`` error) for a truncated or malformed 200 body."""

OVERFLOW_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})
OVERFLOW_WORDS = (
    "maximum context length",
    "exceeds the available context size",
    "context window",
    "context length",
    "context_length_exceeded",
    "too many tokens",
)
REFUSAL_WORDS = (
    "not supported", "unsupported", "not support", "unknown", "unrecognized", "unrecognised", "not allowed",
    "not permitted", "extra", "invalid", "unexpected", "not accept", "not available",
)
"""Words of a refusal: a parameter named in an error without them (e.g. "failed to store") is no refusal."""
_NOT_CONTENT = frozenset({401, 403, 404, 408, 409, 429})
"""Statuses whose words say nothing about the request's parameters or size."""
_CTX_NUMBER = (
    re.compile(r"maximum context length is (\d+)"),
    re.compile(r"available context size \((\d+) tokens?\)"),
    re.compile(r"context (?:window|length|size) (?:of|is) (\d+)"),
)
_PROMPT_NUMBER = (
    re.compile(r"request \((\d+) tokens?\)"),
    re.compile(r"\((\d+) in the messages"),
    re.compile(r"resulted in (\d+) tokens"),
)
_UNKNOWN_MODEL = (
    re.compile(r"\bmodel\b[^.\n]{0,120}?\b(?:not found|does not exist|doesn't exist|not exist)"),
    re.compile(r"\b(?:unknown|no such|invalid) model\b"),
    re.compile(r"model_not_found"),
)


class UnknownModel(Misconfigured):
    """The server does not know ``OPENAI_MODEL``, in whatever shape it said so: never retry blindly."""


@dataclass(frozen=True, slots=True)
class Overflow:
    """A context-window overflow, with what the server told about it (llama.cpp and vLLM give numbers)."""

    n_ctx: int | None = None
    """The server's context size, in its own tokens."""
    n_prompt: int | None = None
    """The size of the refused prompt, in the server's tokens."""


def error_text(exc: openai.APIError) -> str:
    """Everything the error says, lower-cased: the message and the whole body (FastAPI's ``detail``)."""
    body = exc.body
    raw = body if isinstance(body, str) else json.dumps(body, default=str)
    return f"{exc.message}\n{raw}".lower()


def _status(exc: openai.APIError) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _number(body: object, name: str, patterns: Iterable[re.Pattern[str]], text: str) -> int | None:
    value = body.get(name) if isinstance(body, dict) else None
    if isinstance(value, int) and value > 0:
        return value
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return int(match.group(1))
    return None


def overflow_of(exc: openai.APIError) -> Overflow | None:
    """The overflow this error reports, in any common shape; None when it is something else."""
    status = _status(exc)
    if status is None or status in _NOT_CONTENT:
        return None
    text = error_text(exc)
    if exc.code not in OVERFLOW_CODES and exc.type not in OVERFLOW_CODES and not is_overflow_message(text):
        return None
    return Overflow(_number(exc.body, "n_ctx", _CTX_NUMBER, text), _number(exc.body, "n_prompt_tokens",
                                                                           _PROMPT_NUMBER, text))


def is_overflow_message(message: str | None) -> bool:
    text = (message or "").lower()
    return any(words in text for words in OVERFLOW_WORDS)


def is_unknown_model(exc: openai.APIError) -> bool:
    """OpenAI's 404 ``model_not_found``, or a 400/404 whose words say the model does not exist."""
    if exc.code == "model_not_found":
        return True
    return _status(exc) in (400, 404) and any(p.search(error_text(exc)) for p in _UNKNOWN_MODEL)


def refused_params(exc: openai.APIError, sent: Iterable[str]) -> list[str]:
    """Which of the optional parameters ``sent`` this error refuses: named by ``param`` or in its words.

    4xx (but not auth, not-found, conflict or rate limits) and 5xx count, since gateways relay an
    upstream's refusal as a 500; without ``param``, the words must name the parameter and refuse
    (:data:`REFUSAL_WORDS`). An overflow or a lock is never a refusal.
    """
    status = _status(exc)
    if status is None or status in _NOT_CONTENT or exc.code == "conversation_locked" or overflow_of(exc):
        return []
    if is_tool_failure(exc):
        return []
    names = list(sent)
    if exc.param in names:
        return [exc.param]
    text = error_text(exc)
    if not any(words in text for words in REFUSAL_WORDS):
        return []
    return [name for name in names if re.search(rf"(?<![a-z0-9_]){re.escape(name)}(?![a-z0-9_])", text)]


def is_tool_failure(exc: openai.APIError) -> bool:
    """A tool that failed (an MCP server that is down or refused us: OpenAI's 424 ``external_connector_error``),
    not a server that refuses tools: the tool is dropped for this turn, never learned as a refusal."""
    if _status(exc) == 424 or exc.type == "external_connector_error":
        return True
    return "mcp server" in error_text(exc) or "mcp_" in str(exc.code or "")


def describe_broken(exc: Exception) -> str:
    """What was wrong with a body, for the log: positions and field paths, never the content."""
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed JSON ({exc.msg} at char {exc.pos})"
    if isinstance(exc, pydantic.ValidationError):
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors(include_input=False)[:3])
        return f"a body that does not fit the schema ({exc.error_count()} errors: {where})"
    return type(exc).__name__


def broken(what: str, why: str) -> Unavailable:
    """An empty, truncated or malformed answer: one ERROR line, one sentence for the user."""
    log.error("%s: the assistant server sent back %s", what, why)
    return Unavailable(f"{what}: {why}", BROKEN_SENTENCE)


def unknown_model(what: str, exc: openai.APIError | None = None) -> UnknownModel:
    detail = exc.message if exc is not None else "not listed by the server"
    log.error("%s: model not found: check OPENAI_MODEL (%s)", what, detail)
    return UnknownModel(f"{what}: unknown model")


_NO_CONNECTION = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN,
                            errno.ENETDOWN, errno.EADDRNOTAVAIL})
"""OS errors of a connection that could not be made (not of one that broke or was slow)."""


def _unreachable(exc: openai.APIConnectionError) -> str | None:
    """Why no connection could be made (refused, unknown host, unreachable network); None when one was
    made, or the attempt only timed out. Read from the OS error under the SDK's and transport's wrappers."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, socket.gaierror) or (isinstance(cause, OSError) and (cause.errno or 0) < 0):
            return "cannot resolve the host name"  # getaddrinfo's EAI_* codes are negative
        if isinstance(cause, OSError) and cause.errno in _NO_CONNECTION:
            return os.strerror(cause.errno).lower()
        cause = cause.__cause__ or cause.__context__
    return None


def _where(exc: openai.APIConnectionError) -> str:
    """The server's scheme, host and port (never the credentials a URL may carry)."""
    try:
        url = exc.request.url
    except (AttributeError, RuntimeError):
        return "OPENAI_BASE_URL"
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")


def translate(exc: openai.APIError, *, what: str) -> Exception:
    """Map an SDK error to Misconfigured, Unavailable, ContextOverflow or BotError, and log it once."""
    code = exc.code
    status = _status(exc)
    if isinstance(exc, openai.APIConnectionError) and (refused := _unreachable(exc)) is not None:
        # Before the timeout branch: openai's aiohttp transport reports a refused connection or an
        # unknown host as a ConnectTimeout, so an APITimeoutError can be a server that is not there.
        log.warning("%s: cannot reach the assistant server at %s (%s): check OPENAI_BASE_URL",
                    what, _where(exc), refused)
        return Unavailable(f"{what}: cannot connect ({refused})", UNREACHABLE_SENTENCE)
    if isinstance(exc, openai.APITimeoutError):
        log.warning("%s timed out", what)
        return Unavailable(f"{what}: timeout", TIMEOUT_SENTENCE)
    if isinstance(exc, openai.APIConnectionError):
        log.warning("%s: lost the connection to the assistant server at %s: %s", what, _where(exc),
                    exc.__cause__ or exc)
        return Unavailable(f"{what}: connection error")
    if isinstance(exc, openai.APIResponseValidationError):
        return broken(what, "a body that does not fit the schema")
    if overflow_of(exc) is not None:
        return ContextOverflow(str(exc))
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        log.error("%s: the assistant server refused our credentials (%s): check OPENAI_API_KEY", what, status)
        return Misconfigured(f"{what}: {status}")
    if is_unknown_model(exc):
        return unknown_model(what, exc)
    if isinstance(exc, openai.NotFoundError):
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
