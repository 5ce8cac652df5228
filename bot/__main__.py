"""``python -m bot COMMAND``: console | slack | discord | janitor | threads | doctor | profiles.

The command-line entry point is the one module of ``bot`` that imports ``adapters``. Every
command but ``doctor`` checks what it needs before it starts, and a mistake is one line on
stderr (``configuration error: NAME: ...``) with exit code 2, never a traceback: a missing
setting, a ``REDIS_URL`` that does not answer (or is no URL, or the wrong kind of Redis),
``janitor``/``threads`` without a shared Redis, a busy ``PORT`` or ``METRICS_PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import sys
from collections.abc import Awaitable, Callable

from bot.config import ConfigError, Settings, load_settings
from bot.logs import setup_logging
from bot.ops.event_loop import loop_factory, run_serving
from bot.runtime import Runtime, build_runtime


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="threadkeeper: a Slack and Discord assistant")
    sub = parser.add_subparsers(dest="command", required=True)
    console = sub.add_parser("console", help="chat in this terminal (or through a pipe)")
    console.add_argument("--user", help="who you are (default: your OS user)")
    console.add_argument("--channel", default="console", help="conversation name (default: console)")
    sub.add_parser("slack", help="run the Slack bot (Socket Mode if SLACK_APP_TOKEN is set, else HTTP on PORT)")
    discord = sub.add_parser("discord", help="run the Discord bot")
    discord.add_argument("--invite-url", action="store_true", help="print the invite URL and exit")
    sub.add_parser("janitor", help="delete idle threads and retry queued deletions, on an interval")
    threads = sub.add_parser("threads", help="list, count, purge and erase threads", add_help=False)
    threads.add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser("doctor", help="check every configured piece and say how to fix what fails")
    from bot.ops.profiles_cli import add_arguments

    add_arguments(sub.add_parser("profiles", help="show the profile that applies somewhere, or check a profiles file"))
    return parser


async def _with_runtime(
    settings: Settings, body: Callable[[Runtime], Awaitable[int | None]], *, serve: bool = False
) -> int:
    """Build the runtime, run ``body``; with ``serve`` (the bots), settle the heap first (:mod:`bot.ops.heap`) and
    run metrics and the in-process janitor beside it."""
    runtime = build_runtime(settings)
    try:
        if not serve:
            return int(await body(runtime) or 0)
        from bot.ops.heap import settle_heap
        from bot.ops.serve import extras

        settle_heap()  # built, not yet serving: what is alive now lives as long as the process
        async with extras(runtime):
            return int(await body(runtime) or 0)
    finally:
        await runtime.close()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "threads":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "threads":  # its own command line (and --help) first: no settings or Redis needed
            from bot.ops import admin

            parsed = admin.parse([*extra, *args.args])
            if isinstance(parsed, int):
                return _flushed(parsed)
            args.threads = parsed
        settings = load_settings()
        setup_logging(settings.log_level, settings.log_format)
        for warning in settings.warnings:
            logging.getLogger("threadkeeper.config").warning(warning)
        return _flushed(_dispatch(args, settings))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `python -m bot threads list | head`: the reader left; say nothing more
        _stdout_to_devnull()
        return 1
    except KeyboardInterrupt:
        return 130


def _flushed(code: int) -> int:
    """Flush stdout inside main, so a closed pipe surfaces here rather than at interpreter exit."""
    sys.stdout.flush()
    return code


def _stdout_to_devnull() -> None:
    """The Python docs' recipe for SIGPIPE: the interpreter's last flush of stdout must not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (stdout replaced in-process): nothing to flush
        pass


NEEDS: dict[str, tuple[str, ...]] = {
    "console": ("openai_api_key",),
    "slack": ("openai_api_key",),  # and SLACK_BOT_TOKEN, or the OAuth settings: the adapter says which is missing
    "discord": ("openai_api_key", "discord_token"),
}
"""Settings each command cannot start without."""

SHARED_REDIS = ("janitor", "threads")
"""Commands that only make sense on a Redis other processes share."""


def _preflight(command: str, settings: Settings) -> None:
    """Required settings, then REDIS_URL (when set) answers: one-line :class:`ConfigError` otherwise."""
    from bot.ops.doctor import require_redis

    if command in SHARED_REDIS and not settings.redis_url:
        raise ConfigError(f"REDIS_URL: {command} needs a shared Redis; set REDIS_URL")
    settings.require(*NEEDS.get(command, ()))
    from bot.profiles import load_profiles

    load_profiles(settings)  # PROFILES_FILE: one line naming the profile and the key
    if command in ("slack", "discord"):
        loop_factory(settings.event_loop)  # EVENT_LOOP=uvloop where it cannot be imported: one line, before Redis
    asyncio.run(require_redis(settings))
    if command in NEEDS:  # the bots: MODERATION on needs an endpoint that moderates
        from bot.ops.safety_check import require_moderation

        asyncio.run(require_moderation(settings))


def _serve_slack(settings: Settings) -> int:
    """The Slack bot; a PORT it cannot listen on is one line, not a traceback."""
    from adapters import slack
    from adapters.slack.oauth import check_oauth
    from bot.ops.metrics_http import bind_failure

    if settings.slack_oauth:
        check_oauth(settings)  # before the runtime, whose embedded store would warn first: one line
    try:
        return run_serving(settings.event_loop, lambda: _with_runtime(settings, slack.run, serve=True))
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
            raise
        also = " (METRICS_PORT is the same port)" if settings.metrics_port == settings.port else ""
        raise ConfigError(f"PORT: {bind_failure(settings.port, exc)}{also}") from None


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    command = args.command
    if command == "doctor":
        from adapters.discord.doctor import check_discord
        from adapters.slack.doctor import check_slack
        from bot.ops import doctor
        from bot.ops.safety_check import check_moderation, check_profiles

        extra = (("profiles", check_profiles), ("moderation", check_moderation), ("slack", check_slack),
                 ("discord", check_discord))
        return asyncio.run(doctor.main(settings, extra=extra))
    if command == "profiles":
        from bot.ops import profiles_cli

        return profiles_cli.run(args, settings)
    if command == "discord" and args.invite_url:
        from adapters import discord as discord_adapter

        return discord_adapter.print_invite_url(settings)
    _preflight(command, settings)
    if command == "console":
        from adapters import console

        return asyncio.run(_with_runtime(settings, lambda rt: console.run(rt, user=args.user, channel=args.channel)))
    if command == "slack":
        return _serve_slack(settings)
    if command == "discord":
        from adapters import discord as discord_adapter

        return run_serving(settings.event_loop, lambda: _with_runtime(settings, discord_adapter.run, serve=True))
    if command == "janitor":
        from bot.ops import janitor

        return asyncio.run(_with_runtime(settings, janitor.run_forever))
    if command == "threads":
        from bot.ops import admin

        return asyncio.run(_with_runtime(settings, lambda rt: admin.run(rt, args.threads)))
    raise AssertionError(command)


if __name__ == "__main__":
    sys.exit(main())
