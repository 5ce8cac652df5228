"""Erasing a whole workspace: the app was uninstalled there, or an operator ran ``threads forget-workspace``.

Every conversation the index lists in the workspace, shared ones included, goes through the one deleter
(:meth:`bot.core.Core.forget`). A shared conversation is also taken off the lists of the people whose words
were in it (``{prefix}:shared:<digest>``, read from the conversation's own record before it goes), so nothing
left in Redis names a conversation of that workspace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.domain import ForgetResult, ThreadKey
from bot.errors import Unavailable
from bot.store import Store, StoreError


async def forget_workspace(store: Store, forget: Callable[[ThreadKey], Awaitable[ForgetResult]], platform: str,
                           workspace: str) -> ForgetResult:
    """(threads removed, remote deletions left owed) for every thread of ``workspace`` on ``platform``."""
    try:
        entries = await store.index_entries()
    except StoreError as exc:
        raise Unavailable(f"redis: {exc}") from None
    threads = pending = 0
    for key in sorted({k for k, _ in entries if k.platform == platform and k.workspace == workspace},
                      key=lambda k: k.id):
        try:
            people = (await store.shared.voices(key)).people if key.shared else {}
        except StoreError as exc:
            raise Unavailable(f"redis: {exc}") from None
        result = await forget(key)
        threads += result.threads
        pending += result.remote_pending
        for digest in people:
            await store.shared.leave(digest, key)
    return ForgetResult(threads, pending)
