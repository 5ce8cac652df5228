"""``python -m bot threads``: list, count, purge and erase threads.

The Redis index is the only list of the threads that exist on the provider's
side (it has no endpoint that lists conversations), so every command here
reads the index, and deletions go remote first, like the janitor's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from bot.core.feedback import feedback_counts
from bot.domain import ThreadKey, hash_user
from bot.durations import DurationError, format_duration, parse_duration
from bot.ops.forget_workspace import add_parser as add_forget_workspace
from bot.ops.forget_workspace import cmd_forget_workspace
from bot.runtime import Runtime
from bot.store import ThreadRecord

COLUMNS = ("platform", "workspace", "channel", "user", "backend", "thread_id", "created", "last_active", "in", "out")


class UsageError(Exception):
    """A bad command line: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m bot threads", description="List, count, purge and erase threads.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ls = sub.add_parser("list", help="one record per thread")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.add_argument("--platform", help="only this platform (slack, discord, ...)")
    ls.add_argument("--idle-over", metavar="DUR", help="only threads idle longer than DUR (30d, 12h, 90m)")
    stats = sub.add_parser("stats", help="counts by platform and backend, activity range, queued deletions")
    stats.add_argument("--json", action="store_true", help="one JSON object")
    purge = sub.add_parser("purge", help="delete threads remotely, then locally")
    which = purge.add_mutually_exclusive_group(required=True)
    which.add_argument("--idle-over", metavar="DUR", help="threads idle longer than DUR")
    which.add_argument("--all", action="store_true", help="every thread, and every queued remote deletion")
    purge.add_argument("--dry-run", action="store_true", help="say what would be deleted; change nothing")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    forget = sub.add_parser("forget-user", help="erase every thread of one user, across channels and workspaces, "
                            "and what they wrote in conversations shared with others")
    forget.add_argument("platform")
    forget.add_argument("user_id")
    forget.add_argument("--workspace", help="only this workspace (Slack team, Discord guild, or dm)")
    add_forget_workspace(sub)
    return parser


def _duration(option: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _iso(ts: float) -> str | None:
    if ts <= 0:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _short(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if ts > 0 else "-"


def _as_json(record: ThreadRecord) -> dict[str, Any]:
    key = record.key
    return {
        "platform": key.platform,
        "workspace": key.workspace,
        "channel": key.channel,
        "user": key.user,
        "thread_id": record.thread_id,
        "backend": record.backend,
        "created": _iso(record.created),
        "last_active": _iso(record.last_active),
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
    }


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)


async def _selected(runtime: Runtime, idle_over: float | None) -> list[tuple[ThreadKey, float]]:
    cutoff = None if idle_over is None else time.time() - idle_over
    return await runtime.store.index_entries(cutoff)


async def cmd_list(runtime: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    entries = await _selected(runtime, _duration("--idle-over", args.idle_over))
    if args.platform:
        entries = [(k, s) for k, s in entries if k.platform == args.platform]
    found = await runtime.store.records(entries)
    if args.json:
        for record in found:
            print(json.dumps(_as_json(record), ensure_ascii=False), file=out)
        return 0
    if not found:
        print("No threads.", file=out)
        return 0
    rows = [list(COLUMNS)]
    for r in found:
        k = r.key
        rows.append(
            [
                k.platform,
                k.workspace,
                k.channel,
                k.user,
                r.backend,
                r.thread_id,
                _short(r.created),
                _short(r.last_active),
                str(r.input_tokens),
                str(r.output_tokens),
            ]
        )
    _table(rows, out)
    return 0


async def cmd_stats(runtime: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    entries = await runtime.store.index_entries()
    backends = await runtime.store.index_backends()
    by_platform = Counter(k.platform for k, _ in entries)
    by_backend = Counter(backends.get(k.id) or "unknown" for k, _ in entries)
    oldest = entries[0][1] if entries else 0.0
    newest = entries[-1][1] if entries else 0.0
    queued = await runtime.store.tombstone_count()
    feedback = await feedback_counts(runtime.core)
    if args.json:
        report = {
            "threads": len(entries),
            "feedback": feedback,
            "by_platform": dict(sorted(by_platform.items())),
            "by_backend": dict(sorted(by_backend.items())),
            "oldest_activity": _iso(oldest),
            "newest_activity": _iso(newest),
            "queued_remote_deletions": queued,
        }
        print(json.dumps(report), file=out)
        return 0
    now = time.time()

    def counts(c: Counter[str]) -> str:
        return ", ".join(f"{name} {n}" for name, n in sorted(c.items())) or "-"

    def when(ts: float) -> str:
        if not ts:
            return "-"
        ago = int(now - ts) // 60 * 60
        return f"{_short(ts)} UTC ({format_duration(ago) + ' ago' if ago else 'just now'})"

    print(f"threads:                 {len(entries)}", file=out)
    print(f"by platform:             {counts(by_platform)}", file=out)
    print(f"by backend:              {counts(by_backend)}", file=out)
    print(f"oldest activity:         {when(oldest)}", file=out)
    print(f"newest activity:         {when(newest)}", file=out)
    print(f"queued remote deletions: {queued}", file=out)
    print("feedback:                " + (", ".join(f"{platform} +{n.get('positive', 0)} -{n.get('negative', 0)}"
                                               for platform, n in sorted(feedback.items())) or "-"), file=out)
    print(f"idle TTL:                {format_duration(runtime.store.idle_ttl)}", file=out)
    return 0


async def _confirm(question: str, stdin: TextIO, err: TextIO) -> bool:
    """Ask on the terminal; the read runs in a thread so the event loop stays free."""
    print(f"{question} [y/N] ", end="", file=err, flush=True)
    answer = await asyncio.to_thread(stdin.readline)
    return answer.strip().lower() in ("y", "yes")


async def cmd_purge(runtime: Runtime, args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    idle_over = _duration("--idle-over", args.idle_over)
    if not args.dry_run and not args.yes and not stdin.isatty():
        print("threads: error: purge asks for confirmation on a terminal; without one, add --yes", file=err)
        return 2
    entries = await _selected(runtime, idle_over)
    owed = await runtime.store.tombstones() if args.all else []
    what = f"{len(entries)} threads" + (f" and retry {len(owed)} queued remote deletions" if owed else "")
    if args.dry_run:
        print(f"Would delete {what} (dry run: nothing changed).", file=out)
        return 0
    if not entries and not owed:
        print("Nothing to purge.", file=out)
        return 0
    if not args.yes and not await _confirm(f"Delete {what}?", stdin, err):
        print("Aborted; nothing deleted.", file=out)
        return 1
    deleter = runtime.core.deleter
    wait = max(4 * runtime.settings.openai_timeout, 2 * runtime.store.lock_ttl)
    cutoff = None if idle_over is None else time.time() - idle_over
    outcomes: Counter[str] = Counter()
    for stone in owed:
        outcomes["owed-" + await deleter.retry(stone, wait=wait)] += 1
    for key, _ in entries:
        outcomes[await deleter.remove(key, idle_before=cutoff, wait=wait)] += 1
    pending = outcomes["queued"] + outcomes["owed-queued"]
    print(f"Deleted {outcomes['deleted']} threads remotely and locally.", file=out)
    if outcomes["owed-deleted"]:
        print(f"Completed {outcomes['owed-deleted']} queued remote deletions.", file=out)
    if outcomes["active"]:
        print(f"Kept {outcomes['active']} threads that became active meanwhile.", file=out)
    if outcomes["busy"] or outcomes["owed-busy"]:
        print(f"Skipped {outcomes['busy'] + outcomes['owed-busy']} threads still busy answering.", file=out)
    if pending:
        print(f"{pending} remote deletions failed and stay queued; the janitor retries them.", file=err)
        return 1
    return 0


async def cmd_forget_user(runtime: Runtime, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Every thread of one user: scan the whole index, since user sets are per workspace."""

    def mine(key: ThreadKey) -> bool:
        return (
            key.platform == args.platform
            and key.user == args.user_id
            and (args.workspace is None or key.workspace == args.workspace)
        )

    keys = {k for k, _ in await runtime.store.index_entries() if mine(k)}
    if args.workspace is not None:
        probe = ThreadKey(args.platform, args.workspace, "-", args.user_id)
        keys.update(await runtime.store.user_keys(probe.user_id))
    threads = pending = 0
    for key in sorted(keys, key=lambda k: k.id):
        threads += (await runtime.core.forget(key)).threads
    # What they wrote in conversations shared with others (a Slack thread): their items and kept turns.
    shared = await runtime.core.shared.erase(args.platform, args.workspace, args.user_id, wait=runtime.core.lock_wait)
    threads += shared.threads
    pending += shared.remote_pending
    # Deletions still owed for this user (a failed forget now or earlier): one more try each.
    deleter = runtime.core.deleter
    owner = hash_user(args.platform, args.user_id)
    for stone in await runtime.store.tombstones():
        if (stone.key is not None and mine(stone.key)) or (stone.key is None and stone.owner == owner):
            pending += int(await deleter.retry(stone, wait=2 * runtime.store.lock_ttl) in ("queued", "busy"))
    print(f"Erased {threads} threads of {args.platform} user {args.user_id}.", file=out)
    if pending:
        print(f"{pending} remote deletions failed and stay queued; the janitor retries them.", file=err)
        return 1
    return 0


def parse(args: list[str], *, err: TextIO | None = None) -> argparse.Namespace | int:
    """The command line of ``threads``, checked before anything connects; an int is the exit code to
    stop with (0 after ``--help``, 2 after one line on ``err`` for a bad command line)."""
    try:
        ns = _parser().parse_args(args)
        _duration("--idle-over", getattr(ns, "idle_over", None))
    except UsageError as exc:
        print(f"threads: error: {exc}", file=err or sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    return ns


async def run(
    runtime: Runtime,
    ns: argparse.Namespace,
    *,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run one parsed ``threads`` command (see :func:`parse`); returns the exit code."""
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    try:
        if ns.command == "list":
            return await cmd_list(runtime, ns, out)
        if ns.command == "stats":
            return await cmd_stats(runtime, ns, out)
        if ns.command == "purge":
            return await cmd_purge(runtime, ns, out, err, stdin)
        if ns.command == "forget-workspace":
            return await cmd_forget_workspace(runtime, ns, out, err)
        return await cmd_forget_user(runtime, ns, out, err)
    except UsageError as exc:
        print(f"threads: error: {exc}", file=err)
        return 2


async def main(
    runtime: Runtime,
    args: list[str],
    *,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Parse and run one ``threads`` command; returns the exit code (2 for a bad command line)."""
    ns = parse(args, err=err)
    if isinstance(ns, int):
        return ns
    return await run(runtime, ns, stdin=stdin, out=out, err=err)
