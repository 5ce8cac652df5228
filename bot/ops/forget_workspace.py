"""``python -m bot threads forget-workspace <platform> <workspace>``: erase every thread of one workspace.

For a Slack workspace that uninstalled the app (or an operator's request): every conversation the index
lists in that workspace, shared ones included, goes through the core's one deleter (lock, tombstone,
remote delete, local delete), then the workspace's installation (Slack OAuth), so its token is gone too. The
Slack adapter does the same when a workspace uninstalls the app (``app_uninstalled``, ``tokens_revoked``):
:meth:`bot.core.Core.erase_workspace`. An interrupted run leaves a mark the janitor finishes (or run it again).
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from bot.errors import Unavailable
from bot.runtime import Runtime


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser("forget-workspace", help="erase every thread of one workspace (a Slack team, a "
                             "Discord server) and its installation")
    command.add_argument("platform")
    command.add_argument("workspace")


async def cmd_forget_workspace(runtime: Runtime, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        result = await runtime.core.erase_workspace(args.platform, args.workspace, args.workspace)
    except Unavailable as exc:
        print(f"threads: Redis is unavailable ({exc}); nothing more was erased: run this again once it is back",
              file=err)
        return 1
    installed = ("; its installation was deleted (the app must be installed there again to answer)"
                 if result.installation else "; it had no installation here")
    print(f"Erased {result.threads} threads of {args.platform} workspace {args.workspace}{installed}.", file=out)
    if result.remote_pending:
        print(f"{result.remote_pending} remote deletions failed and stay queued; the janitor retries them.", file=err)
        return 1
    return 0
