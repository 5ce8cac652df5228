"""``python -m bot doctor``: check every configured piece, one line each, with the fix.

Each line reads ``PASS|FAIL|WARN|SKIP <piece>: <what was checked> — <the fix>``. Only FAIL
lines make the exit code non-zero. Every check is one or two cheap calls with a short
timeout, the checks run concurrently, and no line ever carries a secret: tokens and
passwords are scrubbed from the output, URLs are shown without their credentials. The
Slack and Discord checks belong to their adapters; the command line passes them in.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Sequence
from typing import Literal, TextIO

import openai

from bot.checks import Check, Line, redact_url, scrub, secret, secrets_of
from bot.config import ConfigError, Settings
from bot.store.probe import Finding, Verdict, examine

CHECK_TIMEOUT = 5.0
"""Seconds each piece may take before it counts as unreachable."""


# -- Redis -----------------------------------------------------------------------------------------
REDIS_FAILURES: dict[Verdict, tuple[str, str, str]] = {
    "unreachable": ("REDIS_URL", "cannot connect to {where} ({detail})", "start Redis there or fix REDIS_URL"),
    "badurl": ("REDIS_URL", "{where} is not a usable Redis URL ({detail})",
               "write redis://[user:password@]host:port/db (rediss:// for TLS)"),
    "auth": ("REDIS_URL", "{where} refused our credentials", "fix the user/password in REDIS_URL"),
    "readonly": ("REDIS_URL", "{where} is a read-only replica", "point REDIS_URL at the primary"),
    "denied": ("REDIS_URL", "{where} denied a read/write", "give the REDIS_URL user read/write access"),
    "error": ("REDIS_URL", "{where} answered an error to PING/SET ({detail})", "check the server behind REDIS_URL"),
    "not_cluster": ("REDIS_CLUSTER", "{where} is a single Redis server, not a cluster",
                    "unset REDIS_CLUSTER (and write redis://, not redis+cluster://), or point REDIS_URL at a cluster"),
    "cluster": ("REDIS_CLUSTER", "{where} is a Redis Cluster node, but REDIS_CLUSTER is off",
                "set REDIS_CLUSTER=true, or write the URL as redis+cluster://"),
}
"""verdict -> (the setting at fault, what was found, the fix)."""

SELF_EXPLAINING: frozenset[Verdict] = frozenset({"unreachable", "badurl"})
"""Verdicts whose start-up line needs no fix after it."""


def _where(url: str) -> str:
    """The URL without credentials, even when it does not parse (a bad port)."""
    try:
        return redact_url(url)
    except ValueError:
        return re.sub(r"//[^/]*@", "//", url)


def redis_problem(settings: Settings, finding: Finding) -> tuple[str, str, str] | None:
    """(setting, what, fix) for a failed probe of REDIS_URL; None when it passed."""
    if finding.verdict == "ok" or not settings.redis_url:
        return None
    name, what, fix = REDIS_FAILURES[finding.verdict]
    return name, what.format(where=_where(settings.redis_url), detail=finding.detail), fix


async def _examine(url: str, settings: Settings, limit: float) -> Finding:
    return await examine(url, cluster=settings.redis_cluster, prefix=settings.redis_prefix, limit=limit)


async def require_redis(settings: Settings, limit: float = CHECK_TIMEOUT) -> None:
    """Start-up check: REDIS_URL (when set) answers and can be written, or one-line :class:`ConfigError`."""
    if not settings.redis_url:
        return
    finding = await _examine(settings.redis_url, settings, limit)
    problem = redis_problem(settings, finding)
    if problem is not None:
        name, what, fix = problem
        line = f"{name}: {what}" if finding.verdict in SELF_EXPLAINING else f"{name}: {what}; {fix}"
        raise ConfigError(scrub(line, secrets_of(settings)))


async def check_redis(settings: Settings, limit: float) -> list[Line]:
    if not settings.redis_url:
        return [
            Line(
                "WARN",
                "redis",
                "REDIS_URL is not set: embedded in-process store (state is lost on restart, not shared by workers)",
                "fine for a try-out; set REDIS_URL for production",
            )
        ]
    problem = redis_problem(settings, await _examine(settings.redis_url, settings, limit))
    if problem is not None:
        _, what, fix = problem
        return [Line("FAIL", "redis", what, fix)]
    kind = "cluster" if settings.redis_cluster else "server"
    return [Line("PASS", "redis", f"{kind} {_where(settings.redis_url)} answers PING and a test write")]


# -- OpenAI ------------------------------------------------------------------------------------------
CONVERSATIONS_PROBE = "conv_doctor_probe"
"""A conversation id that never exists: OpenAI answers 404 with an error naming it; a server without
the Conversations API answers its router's plain 404 (``{"detail": "Not Found"}``)."""

ModelLookup = Literal["found", "missing", "no-endpoint"]


def _message(exc: openai.APIStatusError) -> str:
    """The error object's message (``{"error": {"message": ...}}``), or "" for other bodies."""
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) else ""


async def _find_model(client: openai.AsyncOpenAI, model: str) -> tuple[ModelLookup, list[str]]:
    """``models.retrieve``; where that route is missing (vLLM and others), ``models.list``."""
    try:
        await client.models.retrieve(model)
        return "found", []
    except openai.NotFoundError as exc:
        if exc.code == "model_not_found":
            return "missing", []
    except openai.BadRequestError as exc:  # gateways: 400 "model 'x' not found", without a code
        text = _message(exc).lower()
        if model.lower() not in text or not ("not found" in text or "does not exist" in text):
            raise
        return "missing", []
    try:
        listed = [m.id for m in (await client.models.list()).data]
    except openai.APIError:
        return "no-endpoint", []
    return ("found" if model in listed else "missing"), listed


async def _has_conversations(client: openai.AsyncOpenAI) -> bool | str:
    """True/False, or why it could not be told."""
    try:
        await client.conversations.retrieve(CONVERSATIONS_PROBE)
    except openai.APIStatusError as exc:
        if exc.status_code in (400, 404):
            message = _message(exc)
            return CONVERSATIONS_PROBE in message and not message.startswith("Invalid URL")
        if exc.status_code in (405, 501):
            return False
        return f"it answered {exc.status_code}"
    except openai.APIError as exc:
        return type(exc).__name__
    return True


def _api_failure(exc: openai.APIError, where: str, limit: float) -> Line:
    piece = "openai"
    if isinstance(exc, openai.AuthenticationError):
        return Line("FAIL", piece, f"{where} rejected the API key (401)", "set OPENAI_API_KEY to a valid key")
    if isinstance(exc, openai.PermissionDeniedError):
        return Line("FAIL", piece, f"the API key may not use {where} (403)", "check the key's project and role")
    if isinstance(exc, openai.RateLimitError):
        if exc.code == "insufficient_quota":
            return Line("FAIL", piece, "the OpenAI account is out of quota (429)", "add credits or use another key")
        return Line("WARN", piece, f"{where} is rate limiting this key (429)", "try again in a minute")
    if isinstance(exc, openai.APITimeoutError):
        return Line("FAIL", piece, f"no answer from {where} within {limit:g}s", "check OPENAI_BASE_URL and network")
    if isinstance(exc, openai.APIConnectionError):
        return Line("FAIL", piece, f"cannot reach {where}", "check OPENAI_BASE_URL and your network")
    status = exc.status_code if isinstance(exc, openai.APIStatusError) else "an error"
    return Line("FAIL", piece, f"{where} answered {status} to a model lookup", "check OPENAI_BASE_URL")


async def check_openai(settings: Settings, limit: float) -> list[Line]:
    piece = "openai"
    api_key = secret(settings.openai_api_key)
    if api_key is None and not settings.openai_base_url:
        return [Line("FAIL", piece, "OPENAI_API_KEY is not set", "set OPENAI_API_KEY (every command needs it)")]
    where = redact_url(settings.openai_base_url or "https://api.openai.com/v1")
    model, backend = settings.openai_model, settings.assistant_backend
    client = openai.AsyncOpenAI(
        api_key=api_key or "unset", base_url=settings.openai_base_url, timeout=limit, max_retries=0
    )
    try:
        lookup, listed = await _find_model(client, model)
        conversations = await _has_conversations(client) if backend == "conversations" and lookup == "found" else None
    except openai.APIError as exc:
        return [_api_failure(exc, where, limit)]
    finally:
        await client.close()
    if lookup == "no-endpoint":
        return [Line("FAIL", piece, f"{where} has no models endpoint (404)",
                     "check OPENAI_BASE_URL (OpenAI-compatible servers usually end in /v1)")]
    if lookup == "missing" and listed:
        some = ", ".join(f"'{m}'" for m in listed[:5]) + (", ..." if len(listed) > 5 else "")
        return [Line("FAIL", piece, f"model '{model}' not found; {where} lists {some}",
                     "set OPENAI_MODEL to one of the models it lists")]
    if lookup == "missing":
        return [Line("FAIL", piece, f"model '{model}' not found", "set OPENAI_MODEL to a model your key can use")]
    found = f"key accepted by {where}; model '{model}' available" + await _refusals(settings)
    if backend == "chat":
        return [Line("PASS", piece, f"{found} (chat backend: the Conversations API is not needed)")]
    if conversations is True:
        return [Line("PASS", piece, f"{found}; Conversations API present (conversations backend)")]
    if conversations is False:
        return [Line("FAIL", piece, f"{found}, but it has no Conversations API, which ASSISTANT_BACKEND="
                     "conversations (the default) needs",
                     "set ASSISTANT_BACKEND=chat (history kept in Redis; works with any chat completions server)")]
    return [Line("WARN", piece, f"{found}; could not tell whether it has the Conversations API ({conversations})",
                 "if answers fail, set ASSISTANT_BACKEND=chat")]


async def _refusals(settings: Settings) -> str:
    """What the workers learned this server refuses (shared in Redis), as a clause for the openai line."""
    if not settings.redis_url:
        return ""
    from bot.runtime import build_runtime

    runtime = build_runtime(settings)
    try:
        refused = await runtime.assistant.refused_params()
    except Exception:  # the Redis check reports Redis; this clause is only a bonus
        return ""
    finally:
        await runtime.close()
    if not refused:
        return ""
    return f"; it refused {', '.join(refused)} (the bot no longer sends them)"


# -- running -----------------------------------------------------------------------------------------
CORE_CHECKS: tuple[tuple[str, Check], ...] = (
    ("redis", check_redis),
    ("openai", check_openai),
)


async def _bounded(piece: str, check: Check, settings: Settings, limit: float) -> list[Line]:
    try:
        async with asyncio.timeout(limit + 1.0):
            return await check(settings, limit)
    except TimeoutError:
        return [Line("FAIL", piece, f"no answer within {limit:g}s", "check the address and your network")]
    except Exception as exc:  # a check must never crash the others; the type name carries no secret
        return [Line("FAIL", piece, f"check crashed ({type(exc).__name__})", "run with LOG_LEVEL=DEBUG and report it")]


async def run_checks(
    settings: Settings, limit: float = CHECK_TIMEOUT, extra: Sequence[tuple[str, Check]] = ()
) -> list[Line]:
    """The core's checks and ``extra`` (the adapters'), concurrently; the lines come back in a fixed order."""
    checks = [*CORE_CHECKS, *extra]
    results = await asyncio.gather(*(_bounded(piece, check, settings, limit) for piece, check in checks))
    return [line for lines in results for line in lines]


async def main(
    settings: Settings,
    *,
    extra: Sequence[tuple[str, Check]] = (),
    limit: float = CHECK_TIMEOUT,
    out: TextIO | None = None,
) -> int:
    """Print one line per check; 1 if anything failed, else 0."""
    stream = out or sys.stdout
    lines = await run_checks(settings, limit, extra)
    secrets = secrets_of(settings)
    for line in lines:
        print(scrub(str(line), secrets), file=stream)
    failed = sum(1 for line in lines if line.status == "FAIL")
    passed = sum(1 for line in lines if line.status == "PASS")
    print(f"doctor: {passed} passed, {failed} failed", file=stream)
    return 1 if failed else 0


__all__ = ["CORE_CHECKS", "Line", "check_openai", "check_redis", "main", "redis_problem", "require_redis", "run_checks"]
