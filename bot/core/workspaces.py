"""Erasing a whole workspace: the app was uninstalled there, or an operator ran ``threads forget-workspace``.

Every conversation the index lists in the workspace, shared ones included, goes through the one deleter
(:meth:`bot.core.Core.forget`). A shared conversation is also taken off the lists of the people whose words
were in it (``{prefix}:shared:<digest>``, read from the conversation's own record before it goes), so nothing
left in Redis names a conversation of that workspace.

:func:`erase_workspace` makes that durable: the workspace is marked as being erased first (by digest:
:class:`bot.store.installations.Erasures`), its installation (Slack OAuth) is deleted last, and the mark goes
after it. A process stopped anywhere in between leaves the mark, and the janitor's next pass
(:func:`resume_erasures`) finishes the erasure: the threads the index still lists in that workspace, then the
installation. Redis failing anywhere is one :class:`~bot.errors.Unavailable`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.domain import ForgetResult, ThreadKey
from bot.store import Store, unavailable
from bot.store.installations import workspace_digest

Forget = Callable[[ThreadKey], Awaitable[ForgetResult]]


@dataclass(frozen=True, slots=True)
class Erased:
    """What erasing a workspace did."""

    threads: int
    remote_pending: int
    """Remote deletions that failed: queued for the janitor (tombstones)."""
    installation: bool
    """Whether an installation of it (Slack OAuth) was deleted."""


async def forget_workspace(store: Store, forget: Forget, platform: str, workspace: str) -> ForgetResult:
    """(threads removed, remote deletions left owed) for every thread of ``workspace`` on ``platform``."""
    with unavailable():
        entries = await store.index_entries()
        keys = sorted({k for k, _ in entries if k.platform == platform and k.workspace == workspace},
                      key=lambda k: k.id)
        threads = pending = 0
        for key in keys:
            people = (await store.shared.voices(key)).people if key.shared else {}
            result = await forget(key)
            threads += result.threads
            pending += result.remote_pending
            for digest in people:
                await store.shared.leave(digest, key)
        await store.shared.sweep(keys)
    return ForgetResult(threads, pending)


async def erase_workspace(store: Store, forget: Forget, platform: str, workspace: str,
                          installation: str | None) -> Erased:
    """Every thread of ``workspace``, then the installation kept under ``installation`` (a workspace id: the
    same one, or a Slack enterprise for an org-wide install; None: none), durably (see the module docstring)."""
    with unavailable():
        mark = await store.erasures.begin(platform, workspace, installation)
        result = await forget_workspace(store, forget, platform, workspace)
        removed = await store.erasures.finish(mark)
    return Erased(result.threads, result.remote_pending, removed)


async def resume_erasures(store: Store, forget: Forget) -> int:
    """Finish the erasures a stopped process left marked (the janitor's part); returns how many."""
    with unavailable():
        marks = await store.erasures.pending()
        if not marks:
            return 0
        listed = {(k.platform, k.workspace) for k, _ in await store.index_entries()}
        by_digest = {workspace_digest(platform, workspace): (platform, workspace) for platform, workspace in listed}
        for mark in marks:
            if mark in by_digest:
                await forget_workspace(store, forget, *by_digest[mark])
            await store.erasures.finish(mark)
    return len(marks)
