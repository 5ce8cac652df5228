"""The thread map, kept turns, index, tombstones, limits and flags: the store's one class.

The hot path costs two round trips per message: taking the thread's lock
(:meth:`Store.lock`: claim the message for dedupe, lock, read the mapping) and
:meth:`Store.record_turn` (save turns, refresh TTLs and the index, mark the
message answered, unlock). Both are Lua scripts (:mod:`bot.store.scripts`), so
they are atomic. Retention's reads are in :mod:`bot.store.retention`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, cast

import bot.store.scripts as lua
from bot.domain import ThreadKey, Turn
from bot.store.chat_history import ChatHistory
from bot.store.connect import RedisClient, StoreError, as_str
from bot.store.installations import Erasures
from bot.store.keys import Keys
from bot.store.lock import RedisLock
from bot.store.records import Admission, FinishedTurn, Recorded, SharedRecord, ThreadRecord
from bot.store.retention import RetentionReads
from bot.store.server_notes import ServerNotes
from bot.store.shared import SharedRecords

log = logging.getLogger("threadkeeper.store")


class Scripts:
    """The store's Lua scripts, registered once per client."""

    def __init__(self, redis: RedisClient) -> None:
        self.acquire = redis.register_script(lua.ACQUIRE)
        self.renew = redis.register_script(lua.RENEW)
        self.release = redis.register_script(lua.RELEASE)
        self.finish = redis.register_script(lua.FINISH)
        self.save = redis.register_script(lua.SAVE)
        self.delete_local = redis.register_script(lua.DELETE_LOCAL)
        self.admit = redis.register_script(lua.ADMIT)
        self.save_summary = redis.register_script(lua.SAVE_SUMMARY)



def turns_of(raw: list[Any]) -> list[Turn]:
    """Kept items as stored (JSON), skipping anything malformed."""
    out: list[Turn] = []
    for item in raw:
        try:
            turn = json.loads(item)
        except ValueError:
            continue
        if isinstance(turn, dict) and turn.get("role") in ("user", "assistant") and "text" in turn:
            out.append(Turn(role=str(turn["role"]), text=str(turn["text"])))
    return out


def _today() -> str:
    """The UTC day that per-user daily counters belong to."""
    return time.strftime("%Y%m%d", time.gmtime())


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class Store(RetentionReads):
    def __init__(
        self,
        redis: RedisClient,
        *,
        prefix: str = "tk",
        idle_ttl: float = 30 * 86400,
        lock_ttl: float = 30.0,
        dedupe_ttl: float = 3600.0,
        keep_items: int = 20,
        cluster: bool = False,
    ) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.idle_ttl = idle_ttl
        self.lock_ttl = lock_ttl
        self.dedupe_ttl = dedupe_ttl
        self.keep_items = keep_items
        self.cluster = cluster
        self.scripts = Scripts(redis)
        self.chat = ChatHistory(redis, self.keys, idle_ttl=idle_ttl, cluster=cluster)
        """The chat backend's history (its own thread ids, same idle TTL)."""
        self.notes = ServerNotes(redis, self.keys)
        """Facts learned about the assistant server (refused parameters, context size), shared by workers."""
        self.shared = SharedRecords(redis, self.keys, idle_ttl=idle_ttl, cluster=cluster)
        """Shared conversations: who said what, the context mark, threads the bot joined."""
        self.erasures = Erasures(redis, self.keys)
        """Workspace erasures under way (an uninstall, ``threads forget-workspace``): the janitor finishes them."""

    @property
    def pending_ttl(self) -> float:
        """How long a claimed-but-unanswered message blocks redelivery if its worker dies."""
        return self.lock_ttl * 2

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> bool:
        """Whether Redis answers a PING now (readiness probes); any failure is False, never an exception."""
        try:
            return bool(await self.redis.ping())  # type: ignore[misc]
        except Exception as exc:  # RedisError, a cluster client's own exceptions, OSError: all mean "not ready"
            log.debug("redis ping failed: %s", exc)
            return False

    # -- locks -----------------------------------------------------------------------------------
    def lock(self, key: ThreadKey, *, claim: str | None = None, wait: float = 0.0) -> RedisLock:
        """The thread's lock (see :mod:`bot.store.lock`); ``claim``: a message id to dedupe on."""
        return RedisLock(self, self.keys.lock(key), name=key.digest, ttl=self.lock_ttl, wait=wait,
                         thread=key, claim=claim)

    def lease(self, ttl: float) -> RedisLock:
        """The janitor's global lease: one pass at a time across every process."""
        return RedisLock(self, self.keys.janitor_lock(), name="janitor", ttl=ttl)

    def _globals(self, key: ThreadKey) -> list[str]:
        return [self.keys.index, self.keys.index_ids, self.keys.user(key.user_id)]

    async def _index_update(self, key: ThreadKey, thread_id: str, backend: str, now: float) -> None:
        """The cross-slot half of a save, only needed on Cluster."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.index, {key.id: now})
            pipe.hset(self.keys.index_ids, key.id, f"{backend} {thread_id}")
            pipe.sadd(self.keys.user(key.user_id), key.id)
            await pipe.execute()

    # -- the message path ------------------------------------------------------------
    async def record_turn(self, key: ThreadKey, claim: str | None, token: str, turn: FinishedTurn) -> Recorded:
        """Record an answered turn and unlock; falsy if the lock was no longer ours (only the dedupe mark)."""
        now = time.time()
        keys = [self.keys.thread(key), self.keys.turns(key), self.keys.lock(key), self.keys.seen(key, claim or "-"),
                self.keys.fold(key)]
        if not self.cluster:
            keys += [*self._globals(key), self.keys.tokens(key, _today())]
        args: list[Any] = [
            token,
            turn.thread_id,
            turn.backend,
            repr(now),
            _ms(self.idle_ttl),
            _ms(self.dedupe_ttl),
            self.keep_items,
            key.id,
            turn.input_tokens,
            turn.output_tokens,
            len(turn.turns),
            "1" if turn.fold else "0",
        ]
        args += [json.dumps(t, ensure_ascii=False) for t in turn.turns]
        shared = turn.shared
        if shared is not None:  # written by the same script (its joined thread too, but on Cluster)
            args += self.shared.thread_args(shared)
            if shared.place and not self.cluster:
                keys.append(self.keys.joined(shared.place))
        if self.cluster:
            # The durable index first: a crash in between must never hide a thread from the janitor.
            await self._index_update(key, turn.thread_id, turn.backend, now)
            if turn.input_tokens + turn.output_tokens:
                await self.add_tokens(key, turn.input_tokens + turn.output_tokens)
        written, folding, in_thread = cast(list[int], await self.scripts.finish(keys=keys, args=args))
        if shared is not None and in_thread:
            await self._record_shared(key, shared)
        return Recorded(bool(written), int(folding))

    async def _record_shared(self, key: ThreadKey, shared: SharedRecord) -> None:
        """The shared record's keys outside the thread (people's sets, the writer's tokens, on Cluster the joined
        thread): their failure costs that bookkeeping alone (one warning), never the turn."""
        try:
            await self.shared.record(key, shared, joined=self.cluster)
        except StoreError as exc:
            log.warning("answered %s but could not record who said what (%s); erasing a speaker may miss this turn",
                        key.digest, exc)

    # -- memory ----------------------------------------------------------------------------
    async def fold_pending(self, key: ThreadKey) -> tuple[str, str, list[str]]:
        """What a fold starts from: the thread id, its summary, and the kept items (raw) waiting to be folded."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.thread(key), ["thread_id", "summary"])
            pipe.lrange(self.keys.fold(key), 0, -1)
            (thread_id, summary), raw = await pipe.execute()
        return as_str(thread_id or ""), as_str(summary or ""), [as_str(r) for r in raw]

    async def remembered(self, key: ThreadKey) -> tuple[str, list[Turn], list[Turn]]:
        """What re-primes a lost thread (its lock held): its summary, the kept items waiting to be folded into it,
        and the window. The waiting items are read before the summary: a fold ending in between (it moves items
        from the one to the other) makes them appear twice, never not at all."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lrange(self.keys.fold(key), 0, -1)
            pipe.hget(self.keys.thread(key), "summary")
            pipe.lrange(self.keys.turns(key), 0, -1)
            waiting, summary, kept = await pipe.execute()
        return as_str(summary or ""), turns_of(waiting), turns_of(kept)

    async def save_summary(self, key: ThreadKey, summary: str, start: tuple[str, str, list[str]]) -> bool:
        """Replace the summary and drop the folded items, if nothing changed since ``start`` (``fold_pending``)."""
        thread_id, previous, folded = start
        keys = [self.keys.thread(key), self.keys.fold(key)]
        args: list[str | int] = [summary, len(folded), thread_id, previous, folded[-1] if folded else ""]
        return bool(await self.scripts.save_summary(keys=keys, args=args))

    def fold_lock(self, key: ThreadKey) -> RedisLock:
        """One fold of a thread at a time, across workers; apart from the thread's lock, so answers go on."""
        return RedisLock(self, self.keys.fold(key) + ":lock", name=key.digest, ttl=self.lock_ttl)

    async def save_thread(self, key: ThreadKey, thread_id: str, backend: str, *, gone: str = "") -> None:
        """Record a new thread at once, so it is never orphaned if the send that follows fails.

        An older thread still named by the durable index is queued for remote deletion, unless it
        is ``gone``: the provider just said it no longer exists.
        """
        now = time.time()
        keys = [self.keys.thread(key), self.keys.turns(key)]
        args: list[str | int] = [thread_id, backend, repr(now), _ms(self.idle_ttl), key.id, gone]
        if not self.cluster:
            await self.scripts.save(keys=[*keys, *self._globals(key), self.keys.tombstones], args=args)
            return
        old = await self.redis.hget(self.keys.index_ids, key.id)  # type: ignore[misc]
        if old and as_str(old) != f"{backend} {thread_id}":
            old_backend, _, old_id = as_str(old).partition(" ")
            if old_id != gone:
                await self.add_tombstone(old_id, old_backend, key)
        await self._index_update(key, thread_id, backend, now)
        await self.scripts.save(keys=keys, args=args)

    async def turns(self, key: ThreadKey) -> list[Turn]:
        return turns_of(await self.redis.lrange(self.keys.turns(key), 0, -1))  # type: ignore[misc]

    # -- reads ---------------------------------------------------------------------
    async def get_thread(self, key: ThreadKey) -> ThreadRecord | None:
        """The live mapping, or the index's record of it when the mapping already expired."""
        raw = await self.redis.hgetall(self.keys.thread(key))  # type: ignore[misc]
        data = {as_str(k): as_str(v) for k, v in raw.items()}
        if data.get("thread_id"):
            return ThreadRecord(
                key=key,
                thread_id=data["thread_id"],
                backend=data.get("backend", ""),
                created=float(data.get("created") or 0),
                last_active=float(data.get("last_active") or 0),
                input_tokens=int(data.get("input_tokens") or 0),
                output_tokens=int(data.get("output_tokens") or 0),
            )
        entry = await self.redis.hget(self.keys.index_ids, key.id)  # type: ignore[misc]
        if not entry:
            return None
        backend, _, thread_id = as_str(entry).partition(" ")
        score = await self.redis.zscore(self.keys.index, key.id)
        return ThreadRecord(key, thread_id, backend, 0.0, float(score or 0))

    async def ttls(self, key: ThreadKey) -> dict[str, float]:
        """Remaining lifetime of each record of one thread, in seconds (tests, doctor)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.pttl(self.keys.thread(key))
            pipe.pttl(self.keys.turns(key))
            pipe.zscore(self.keys.index, key.id)
            thread_ms, turns_ms, score = await pipe.execute()
        index_left = (float(score) + self.idle_ttl - time.time()) if score is not None else -1.0
        return {"thread": thread_ms / 1000, "turns": turns_ms / 1000, "index": index_left}

    async def user_keys(self, user_id: str) -> list[ThreadKey]:
        members = await self.redis.smembers(self.keys.user(user_id))  # type: ignore[misc]
        return [ThreadKey.parse(as_str(m)) for m in sorted(members)]

    async def index_entries(self, max_last_active: float | None = None) -> list[tuple[ThreadKey, float]]:
        """Index members (oldest first), optionally only those idle since before ``max_last_active``."""
        hi: float | str = "+inf" if max_last_active is None else max_last_active
        out: list[tuple[ThreadKey, float]] = []
        start = 0
        while True:
            page = await self.redis.zrangebyscore(self.keys.index, "-inf", hi, start=start, num=500, withscores=True)
            for member, score in cast(list[tuple[Any, Any]], page):
                try:
                    out.append((ThreadKey.parse(as_str(member)), float(score)))
                except ValueError:
                    log.warning("skipping a malformed index member %r", as_str(member)[:80])
            if len(page) < 500:
                return out
            start += 500

    # -- deletion --------------------------------------------------------------------
    async def delete_local(self, key: ThreadKey, expected_thread_id: str = "") -> bool:
        """Remove mapping, turns, memory and index entries; False if the key now maps to another thread."""
        keys = [self.keys.thread(key), self.keys.turns(key), self.keys.fold(key)]
        if not self.cluster:
            keys += self._globals(key)
        ok = bool(await self.scripts.delete_local(keys=keys, args=[key.id, expected_thread_id]))
        if ok and self.cluster:
            entry = await self.redis.hget(self.keys.index_ids, key.id)  # type: ignore[misc]
            if not expected_thread_id or not entry or as_str(entry).endswith(expected_thread_id):
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.zrem(self.keys.index, key.id)
                    pipe.hdel(self.keys.index_ids, key.id)
                    pipe.srem(self.keys.user(key.user_id), key.id)
                    await pipe.execute()
        return ok

    async def add_tombstone(self, thread_id: str, backend: str, key: ThreadKey | None = None, *,
                            owner: str = "") -> None:
        """Owe a remote deletion. ``key`` while local records remain; then only ``owner``, a one-way digest."""
        value = f"{backend} {key.id if key else '-'}" + (f" {owner}" if owner else "")
        await self.redis.hset(self.keys.tombstones, thread_id, value)  # type: ignore[misc]

    async def remove_tombstone(self, thread_id: str) -> None:
        await self.redis.hdel(self.keys.tombstones, thread_id)  # type: ignore[misc]

    # -- per-user limits ---------------------------------------------------------------
    async def admit(self, key: ThreadKey, rate: tuple[int, float] | None, budget: int) -> tuple[Admission, str]:
        """Per-user rate limit and daily token budget in one round trip: (verdict, "rate" | "budget")."""
        limit, window = rate or (0, 60.0)
        slot, day = int(time.time() // window), _today()
        keys = [
            self.keys.rate(key, slot),
            self.keys.rate_notice(key, slot),
            self.keys.tokens(key, day),
            self.keys.budget_notice(key, day),
        ]
        code, what = await self.scripts.admit(keys=keys, args=[limit, _ms(window), budget, _ms(2 * 86400)])
        return ("ok", "notify", "silent")[int(code)], as_str(what)

    async def add_tokens(self, key: ThreadKey, tokens: int) -> int:
        day = _today()
        name = self.keys.tokens(key, day)
        async with self.redis.pipeline(transaction=not self.cluster) as pipe:
            pipe.incrby(name, tokens)
            pipe.expire(name, 2 * 86400)
            total, _ = await pipe.execute()
        return int(total)

    async def tokens_today(self, key: ThreadKey) -> int:
        day = _today()
        return int(await self.redis.get(self.keys.tokens(key, day)) or 0)

    # -- small flags (adapters' command hashes and the like) ---------------------------
    async def get_flag(self, name: str) -> str | None:
        value = await self.redis.get(self.keys.flag(name))
        return None if value is None else str(value)

    async def set_flag(self, name: str, value: str) -> None:
        await self.redis.set(self.keys.flag(name), value)

    # -- feedback on answers: counts only, nobody named ------------------------------------
    async def record_feedback(self, platform: str, value: str) -> int:
        return int(await self.redis.hincrby(self.keys.feedback(), f"{platform}:{value}", 1))  # type: ignore[misc]

    async def feedback_counts(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.keys.feedback())  # type: ignore[misc]
        return {str(k): int(v) for k, v in raw.items()}
