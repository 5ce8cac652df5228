"""``python -m bot threads forget-workspace <platform> <workspace>``: erase every thread of one workspace.

For a Slack workspace that uninstalled the app (or an operator's request): every conversation the index
lists in that workspace, shared ones included, goes through the core's one deleter (lock, tombstone,
remote delete, local delete), so an interrupted run leaves only what the janitor completes. The Slack adapter
does the same when a workspace uninstalls the app (``app_uninstalled``, ``tokens_revoked``):
:meth:`bot.core.Core.forget_workspace`.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from bot.runtime import Runtime


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser("forget-workspace", help="erase every thread of one workspace (a Slack team, a "
                             "Discord server)")
    command.add_argument("platform")
    command.add_argument("workspace")


async def cmd_forget_workspace(runtime: Runtime, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    result = await runtime.core.forget_workspace(args.platform, args.workspace)
    threads, pending = result.threads, result.remote_pending
    print(f"Erased {threads} threads of {args.platform} workspace {args.workspace}.", file=out)
    if pending:
        print(f"{pending} remote deletions failed and stay queued; the janitor retries them.", file=err)
        return 1
    return 0
