"""Conversations several people share (a Slack thread), and the context a turn brings along.

Around the message path (:mod:`bot.core.message_path`):

* **before the answer**, under the conversation's lock: the adapter's ``gather`` reads what others wrote since
  the conversation's mark (so two messages arriving together never bring the same lines twice, and a
  redelivery that the dedupe drops reads nothing), and the quoted context is fitted into
  :data:`CONTEXT_SHARE` of ``CONTEXT_BUDGET`` tokens, oldest dropped first;
* **after it**, still under the lock: the new mark, and for a shared conversation which provider items hold
  whose words (the speaker's own, and those of everyone the turn quoted), each person named only by
  :func:`~bot.domain.hash_user`; the platform thread is joined (follow-ups there need no mention).

**Erasure** (``/forget all``, ``threads forget-user``): in every shared conversation a person's words are in
(they wrote in it, or a turn quoted their thread message), the items holding them are deleted on the provider
(``conversations.items.delete``), their kept turns here,
and the thread's memory summary (it may repeat them). The answers to their turns go with them (they may repeat
their words), and so do items that quote them in someone else's turn: nothing they wrote stays. A conversation
nobody else wrote in is forgotten whole, through the one deleter, and so is one that was re-created from kept
turns (lost, or rolled over): whose words its seeded copies hold is not recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from bot.config import Settings
from bot.core.deleter import Deleter
from bot.core.local_locks import KeyedLocks
from bot.domain import Answer, ForgetResult, Gathered, Incoming, Quoted, ThreadKey, Turn, UserTurn, hash_user
from bot.errors import Unavailable
from bot.store import LockBusy, SharedRecord, Store, StoreError, unavailable
from bot.tokens import counter_for, message_tokens

log = logging.getLogger("threadkeeper.core")

CONTEXT_SHARE = 0.5
"""Share of ``CONTEXT_BUDGET`` the quoted context of one turn may take."""


def fit_context(context: tuple[Quoted, ...], budget: int, count: Callable[[str], int]) -> tuple[Quoted, ...]:
    """The newest quoted messages that fit ``budget`` tokens, oldest first (the oldest are dropped first)."""
    kept: list[Quoted] = []
    used = 0
    for quoted in reversed(context):
        used += message_tokens(f"{quoted.author} wrote:\n{quoted.text}", count)
        if used > budget:
            break
        kept.append(quoted)
    if len(kept) < len(context):
        log.info("quoted context cut to the newest %d of %d messages (token budget %d)", len(kept), len(context),
                 budget)
    return tuple(reversed(kept))


@dataclass(frozen=True, slots=True)
class Prepared:
    """One message's turn as sent, and what to record once it is answered."""

    turn: UserTurn
    mark: str = ""


class SharedConversations:
    def __init__(self, store: Store, deleter: Deleter, settings: Settings, locks: KeyedLocks) -> None:
        self.store = store
        self.deleter = deleter
        self.locks = locks
        self.budget = int(settings.context_budget * CONTEXT_SHARE)
        self.count = counter_for(settings.openai_model)

    # -- the message path --------------------------------------------------------------------------
    @staticmethod
    def payer(msg: Incoming) -> ThreadKey:
        """Whose rate limit and daily budget a message counts against: the writer's, also in a shared key."""
        return replace(msg.key, user=msg.author) if msg.key.shared and msg.author else msg.key

    @staticmethod
    def digest(msg: Incoming) -> str:
        """The writer of a shared conversation's turn, one-way; "" where the conversation is one person's."""
        return hash_user(msg.key.platform, msg.author) if msg.key.shared and msg.author else ""

    async def prepare(self, msg: Incoming, turn: UserTurn, since: str) -> Prepared:
        """``turn`` with the adapter's gathered context (read now, under the lock, after ``since``: the mark the
        lock read with the mapping), fitted to the budget."""
        context, speaker, mark = turn.context, turn.speaker, ""
        if msg.gather is not None:
            try:
                got = await msg.gather(since)
            except Exception:  # the adapter's reader: its failure must not cost the answer
                log.warning("reading the context of %s failed; answering without it", msg.key.digest, exc_info=True)
                got = Gathered()
            context += got.context
            speaker = got.speaker or speaker
            mark = got.mark
        fitted = fit_context(context, self.budget, self.count)
        return Prepared(replace(turn, speaker=speaker, context=fitted), mark)

    def quoted(self, msg: Incoming, turn: UserTurn) -> list[str]:
        """The people a turn quotes (not bots, not its own writer), one-way."""
        writer = msg.author if msg.key.shared else msg.key.user
        return sorted({hash_user(msg.key.platform, q.user) for q in turn.context
                       if q.user and not q.is_bot and q.user != writer})

    def kept(self, msg: Incoming, turn: UserTurn, asked: str, answered: str) -> list[Turn]:
        """The kept turns of one message. Both carry, one-way, who wrote them (in a shared conversation) and whom
        they quoted, so erasing any of them takes the words and the answer that may repeat them."""
        kept = [Turn(role="user", text=asked), Turn(role="assistant", text=answered)]
        digest = self.digest(msg)
        about = self.quoted(msg, turn) if digest else []
        for item in kept:
            if digest:
                item["by"] = digest
            if about:
                item["about"] = about
        return kept

    def record(self, msg: Incoming, prepared: Prepared, answer: Answer) -> SharedRecord:
        """What the answer records besides its turn; written with it (:class:`~bot.store.FinishedTurn`).

        Who said what is recorded in shared conversations only: their key names nobody, so a person's list of
        them never names anyone else (a one-person conversation's key names its owner)."""
        key, digest = msg.key, self.digest(msg)
        if digest and not answer.items:
            log.warning("the provider gave no item ids for a turn of %s; erasing its speaker will miss it", key.digest)
        used = answer.usage.input_tokens + answer.usage.output_tokens
        return SharedRecord(mark=prepared.mark, items=tuple(answer.items) if digest else (), wrote=digest,
                            quoted=tuple(self.quoted(msg, prepared.turn)) if digest else (),
                            reseeded=key.shared and answer.recovered, place=msg.place,
                            charge=(self.payer(msg), used) if digest else None)

    async def joined(self, place: str) -> bool:
        """Whether the bot answered in this platform thread (follow-ups there need no mention)."""
        try:
            return await self.store.shared.joined(place)
        except StoreError as exc:
            log.warning("could not tell whether the bot is in a thread (%s); leaving the message alone", exc)
            return False

    async def reset_here(self, key: ThreadKey, result: ForgetResult,
                         forget: Callable[[ThreadKey], Awaitable[ForgetResult]]) -> ForgetResult:
        """``/forget`` in a channel (``key``: the caller there), after their own conversations (``result``): the
        shared conversations of that channel and its threads they wrote or were quoted in go too, for everyone;
        :attr:`ForgetResult.reset` names them so the adapter says so there."""
        if key.shared:
            return result
        below = key.channel + "/"
        with unavailable():
            theirs = await self.store.shared.conversations_of(hash_user(key.platform, key.user))
        threads, pending, reset = result.threads, result.remote_pending, []
        for shared in theirs:
            if (shared.platform, shared.workspace) != (key.platform, key.workspace) or not (
                    shared.channel == key.channel or shared.channel.startswith(below)):
                continue
            done = await forget(shared)
            threads, pending = threads + done.threads, pending + done.remote_pending
            if done.threads:
                reset.append(shared.channel)
        return ForgetResult(threads, pending, tuple(reset))

    # -- erasure -----------------------------------------------------------------------------------
    async def erase(self, platform: str, workspace: str | None, user: str, *, wait: float) -> ForgetResult:
        """Erase one person from every shared conversation (of ``workspace``, or all): see the module docstring."""
        try:
            return await self._erase(platform, workspace, user, wait)
        except StoreError as exc:
            log.error("redis unavailable while erasing a speaker: %s", exc)
            raise Unavailable(f"redis: {exc}") from None

    async def _erase(self, platform: str, workspace: str | None, user: str, wait: float) -> ForgetResult:
        digest = hash_user(platform, user)
        threads = pending = 0
        for key in await self.store.shared.conversations_of(digest):
            if key.platform != platform or (workspace is not None and key.workspace != workspace):
                continue
            try:
                async with self.locks.hold(key.id):
                    done, owed = await self._erase_one(key, digest, wait)
            except LockBusy:
                log.warning("could not erase a speaker from %s: it stayed busy; the next erasure retries", key.digest)
                pending += 1
                continue
            threads += done
            pending += owed
        return ForgetResult(threads, pending)

    async def _erase_one(self, key: ThreadKey, digest: str, wait: float) -> tuple[int, int]:
        """(conversations changed, remote deletions left owed) for one conversation."""
        async with self.store.lock(key, wait=wait):
            record = await self.store.get_thread(key)
            if record is None or not record.thread_id:
                await self.store.shared.leave(digest, key)
                return 0, 0
            voices = await self.store.shared.voices(key)
            said = voices.people.get(digest)
            if key.shared and said and said.wrote and (voices.reseeded or not voices.others_wrote(digest)):
                # Theirs alone, or re-created from kept turns (copies of theirs nobody can tell apart): it goes
                # whole, in the deleter's one order. Quoted only, or in someone's own conversation: their part.
                done = await self.deleter.delete_held(key, record)
                await self.store.shared.leave(digest, key)
                log.info("erased a speaker's shared conversation %s whole (%s)", key.digest,
                         "re-created from kept turns" if voices.reseeded else "nobody else wrote in it")
                return 1, 0 if done else 1
            items = sorted(set(said.wrote + said.quoted)) if said else []
            gone = await self._delete_items(record.thread_id, record.backend, items, key)
            await self.store.shared.erase(key, digest, keep_record=not gone)
            if gone:
                await self.store.shared.leave(digest, key)
            log.info("erased a person's words from conversation %s (%d turns)", key.digest, len(items))
            # Counted as theirs where they wrote; a conversation that only quoted them is someone else's.
            return (1 if said and said.wrote else 0), 0 if gone else 1

    async def _delete_items(self, thread_id: str, backend: str, items: list[str], key: ThreadKey) -> bool:
        if not items:
            return True
        assistant = self.deleter.backends.get(backend or self.deleter.default)
        if assistant is None:
            log.warning("no %r backend configured; a speaker's items in %s stay until the next erasure", backend,
                        key.digest)
            return False
        try:
            await assistant.delete_items(thread_id, items)
        except Exception as exc:
            log.warning("deleting a speaker's items in %s failed (%s); the next erasure retries", key.digest, exc)
            return False
        return True
