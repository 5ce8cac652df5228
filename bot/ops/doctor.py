"""``python -m bot doctor``: check every configured piece, one line each, with the fix.

Each line reads ``PASS|FAIL|WARN|SKIP <piece>: <what was checked> — <the fix>``. Only FAIL
lines make the exit code non-zero. Every check is one or two cheap calls with a short
timeout, the checks run concurrently, and no line ever carries a secret: tokens and
passwords are scrubbed from the output, URLs are shown without their credentials. The
Slack and Discord checks belong to their adapters; the command line passes them in.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

import openai

from bot.checks import Check, Line, redact_url, scrub, secret, secrets_of
from bot.config import Settings
from bot.store.probe import Verdict, probe

CHECK_TIMEOUT = 5.0
"""Seconds each piece may take before it counts as unreachable."""


# -- Redis -----------------------------------------------------------------------------------------
REDIS_FAILURES: dict[Verdict, tuple[str, str]] = {
    "auth": ("refused our credentials", "fix the user/password in REDIS_URL"),
    "readonly": ("is a read-only replica", "point REDIS_URL at the primary"),
    "denied": ("denied a read/write", "give the REDIS_URL user read/write access"),
    "error": ("answered an error to PING/SET", "check the server behind REDIS_URL"),
}


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
    where = redact_url(settings.redis_url)
    verdict = await probe(settings.redis_url, cluster=settings.redis_cluster, prefix=settings.redis_prefix,
                          limit=limit)
    if verdict == "unreachable":
        return [Line("FAIL", "redis", f"cannot connect to {where}", "start Redis there or fix REDIS_URL")]
    if verdict != "ok":
        what, fix = REDIS_FAILURES[verdict]
        return [Line("FAIL", "redis", f"{where} {what}", fix)]
    kind = "cluster" if settings.redis_cluster else "server"
    return [Line("PASS", "redis", f"{kind} {where} answers PING and a test write")]


# -- OpenAI ------------------------------------------------------------------------------------------
async def check_openai(settings: Settings, limit: float) -> list[Line]:
    piece = "openai"
    api_key = secret(settings.openai_api_key)
    if api_key is None and not settings.openai_base_url:
        return [Line("FAIL", piece, "OPENAI_API_KEY is not set", "set OPENAI_API_KEY (every command needs it)")]
    where = redact_url(settings.openai_base_url or "https://api.openai.com/v1")
    model = settings.openai_model
    client = openai.AsyncOpenAI(
        api_key=api_key or "unset", base_url=settings.openai_base_url, timeout=limit, max_retries=0
    )
    try:
        found = await client.models.retrieve(model)
    except openai.AuthenticationError:
        return [Line("FAIL", piece, f"{where} rejected the API key (401)", "set OPENAI_API_KEY to a valid key")]
    except openai.PermissionDeniedError:
        return [Line("FAIL", piece, f"the API key may not use {where} (403)", "check the key's project and role")]
    except openai.NotFoundError as exc:
        if exc.code == "model_not_found" or await _lists_models(client):
            return [Line("FAIL", piece, f"model '{model}' not found", "set OPENAI_MODEL to a model your key can use")]
        return [Line("FAIL", piece, f"{where} has no models endpoint (404)",
                     "check OPENAI_BASE_URL (OpenAI-compatible servers usually end in /v1)")]
    except openai.RateLimitError as exc:
        if exc.code == "insufficient_quota":
            return [Line("FAIL", piece, "the OpenAI account is out of quota (429)", "add credits or use another key")]
        return [Line("WARN", piece, f"{where} is rate limiting this key (429)", "try again in a minute")]
    except openai.APITimeoutError:
        return [Line("FAIL", piece, f"no answer from {where} within {limit:g}s", "check OPENAI_BASE_URL and network")]
    except openai.APIConnectionError:
        return [Line("FAIL", piece, f"cannot reach {where}", "check OPENAI_BASE_URL and your network")]
    except openai.APIStatusError as exc:
        return [Line("FAIL", piece, f"{where} answered {exc.status_code} to a model lookup", "check OPENAI_BASE_URL")]
    finally:
        await client.close()
    backend = settings.assistant_backend
    return [Line("PASS", piece, f"key accepted by {where}; model '{found.id}' available ({backend} backend)")]


async def _lists_models(client: openai.AsyncOpenAI) -> bool:
    """Tell "unknown model" from "wrong base URL" on servers whose 404 carries no code."""
    try:
        await client.models.list()
    except openai.APIError:
        return False
    return True


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


__all__ = ["CORE_CHECKS", "Line", "check_openai", "check_redis", "main", "run_checks"]
