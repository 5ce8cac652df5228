"""Memory across lost conversations: kept turns that leave the window are folded into a rolling summary.

The pattern this product comes from: don't rely on the provider's storage alone; keep the
conversation's milestones and re-prime a new thread with a summary of past interactions. Each
thread's summary lives in its thread hash (same TTL, deleted with it by every erasure); kept items
that leave the window wait in a fold list (also deleted with the thread). Once ``MEMORY_FOLD_EVERY``
of them wait, one short assistant call folds them into the summary *after* the answer, in a task of
its own: never on the user's critical path, one fold per thread at a time across workers. A fold that
fails leaves the items waiting for the next one (one WARNING); answers are never affected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bot.assistants.base import Assistant, ContextOverflow
from bot.config import Settings
from bot.domain import ThreadKey, Turn
from bot.errors import BotError
from bot.metrics import Metrics
from bot.store import LockBusy, Recorded, Store, StoreError
from bot.store.store import turns_of
from bot.tokens import counter_for

log = logging.getLogger("threadkeeper.memory")

SUMMARY_PREFIX = "(Summary of our earlier conversation: "


def as_seed(summary: str) -> list[Turn]:
    """The summary as the first item a new thread is primed with (before the kept turns)."""
    return [Turn(role="assistant", text=f"{SUMMARY_PREFIX}{summary})")] if summary else []


def bound(text: str, max_tokens: int, count: Callable[[str], int]) -> str:
    """Cut ``text`` to about ``max_tokens``, keeping whole words, and mark the cut."""
    if count(text) <= max_tokens:
        return text
    words = text.split()
    while len(words) > 1 and count(" ".join(words) + " …") > max_tokens:
        words = words[: int(len(words) * 0.9)]
    return " ".join(words) + " …"


class Memory:
    def __init__(self, store: Store, assistant: Assistant, settings: Settings, metrics: Metrics) -> None:
        self.store = store
        self.assistant = assistant
        self.enabled = settings.memory == "summary"
        self.max_tokens = settings.memory_max_tokens
        self.fold_every = settings.memory_fold_every
        self.count = counter_for(settings.openai_model)
        self.metrics = metrics
        self._folds: dict[str, asyncio.Task[bool]] = {}

    def after_answer(self, key: ThreadKey, recorded: Recorded) -> None:
        """Start a fold in the background when enough kept items left the window."""
        if not self.enabled or recorded.folding < self.fold_every or key.id in self._folds:
            return
        task = asyncio.create_task(self.fold(key), name=f"memory-fold-{key.digest}")
        self._folds[key.id] = task
        task.add_done_callback(lambda _t: self._folds.pop(key.id, None))

    async def fold(self, key: ThreadKey) -> bool:
        """Fold the waiting items into the summary; False when there was nothing to do or it failed."""
        try:
            async with self.store.fold_lock(key):
                start = await self.store.fold_pending(key)
                _, previous, raw = start
                pending = turns_of(raw)
                if len(raw) < self.fold_every or not pending:
                    return False
                words = max(20, int(self.max_tokens * 0.7))
                sent = await self.assistant.summarize([*as_seed(previous), *pending], words=words)
                summary = bound(sent.text, self.max_tokens, self.count)
                if not summary:
                    raise BotError("an empty summary")
                saved = await self.store.save_summary(key, summary, start)
                used = sent.usage.input_tokens + sent.usage.output_tokens
                self.metrics.tokens.labels("input").inc(sent.usage.input_tokens)
                self.metrics.tokens.labels("output").inc(sent.usage.output_tokens)
                if used:
                    await self.store.add_tokens(key, used)
                log.info("folded %d kept items into the summary of %s (%d tokens)", len(pending), key.digest, used)
                return saved
        except LockBusy:
            return False
        except (BotError, ContextOverflow, StoreError) as exc:
            log.warning("folding the memory of %s failed (%s); the turns wait for the next fold", key.digest, exc)
            return False

    async def seed(self, key: ThreadKey) -> list[Turn]:
        """What re-primes a vanished thread: the summary, then the items not folded into it yet and the window, as
        many of the newest as the assistant takes beside the summary; the window alone with memory off."""
        if not self.enabled:
            return await self.store.turns(key)
        summary, waiting, kept = await self.store.remembered(key)
        first, items = as_seed(summary), [*waiting, *kept]
        limit = self.assistant.seed_limit
        room = len(items) if limit is None else max(limit - len(first), 0)
        return [*first, *items[max(len(items) - room, 0) :]]

    async def settle(self) -> None:
        """Wait for the folds under way (bench and tests; answers never wait for them)."""
        await asyncio.gather(*self._folds.values(), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._folds.values()):
            task.cancel()
        await asyncio.gather(*self._folds.values(), return_exceptions=True)

    async def show(self, key: ThreadKey) -> tuple[str, int]:
        """What is remembered of a thread: (summary, kept items, those waiting to be folded into it included)."""
        summary, waiting, kept = await self.store.remembered(key)
        return summary, len(waiting) + len(kept)
