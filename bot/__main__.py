"""``python -m bot COMMAND``: console | slack | discord | janitor | threads | doctor.

The command-line entry point is the one module of ``bot`` that imports ``adapters``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

from bot.config import ConfigError, Settings, load_settings
from bot.logs import setup_logging
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
    return parser


async def _with_runtime(
    settings: Settings, body: Callable[[Runtime], Awaitable[int | None]], *, serve: bool = False
) -> int:
    """Build the runtime, run ``body``; with ``serve``, also metrics and the in-process janitor."""
    runtime = build_runtime(settings)
    try:
        if not serve:
            return int(await body(runtime) or 0)
        from bot.ops.serve import extras

        async with extras(runtime):
            return int(await body(runtime) or 0)
    finally:
        await runtime.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        setup_logging(settings.log_level, settings.log_format)
        for warning in settings.warnings:
            logging.getLogger("threadkeeper.config").warning(warning)
        return _dispatch(args, settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    command = args.command
    if command == "console":
        from adapters import console

        settings.require("openai_api_key")
        return asyncio.run(_with_runtime(settings, lambda rt: console.run(rt, user=args.user, channel=args.channel)))
    if command == "slack":
        from adapters import slack

        settings.require("openai_api_key", "slack_bot_token")
        return asyncio.run(_with_runtime(settings, slack.run, serve=True))
    if command == "discord":
        from adapters import discord as discord_adapter

        if args.invite_url:
            return discord_adapter.print_invite_url(settings)
        settings.require("openai_api_key", "discord_token")
        return asyncio.run(_with_runtime(settings, discord_adapter.run, serve=True))
    if command == "janitor":
        from bot.ops import janitor

        return asyncio.run(_with_runtime(settings, janitor.run_forever))
    if command == "threads":
        from bot.ops import admin

        return asyncio.run(_with_runtime(settings, lambda rt: admin.main(rt, args.args)))
    if command == "doctor":
        from adapters.discord.doctor import check_discord
        from adapters.slack.doctor import check_slack
        from bot.ops import doctor

        return asyncio.run(doctor.main(settings, extra=(("slack", check_slack), ("discord", check_discord))))
    raise AssertionError(command)


if __name__ == "__main__":
    sys.exit(main())
