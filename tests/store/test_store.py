"""The store against a real Redis: keys, the one lock, dedupe, index, limits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.domain import ThreadKey, Turn
from bot.store import Duplicate, FinishedTurn, LockBusy, SharedRecord, Store
from bot.store.keys import Keys
from bot.store.records import Mapping
from tests.support.store import owed
from tests.support.store import record as record_turn

KEY = ThreadKey("discord", "G1", "C:odd{name}", "U1")


@pytest.fixture
async def store(redis_url: str, prefix: str) -> AsyncIterator[Store]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield Store(client, prefix=prefix, idle_ttl=3600, lock_ttl=5, dedupe_ttl=60, keep_items=4)
    await client.aclose()


def test_keys_share_one_hash_tag_per_thread_that_names_nobody() -> None:
    keys = Keys("tk")
    tagged = [keys.thread(KEY), keys.turns(KEY), keys.lock(KEY), keys.seen(KEY, "m1")]
    tags = {k[k.index("{") + 1 : k.index("}")] for k in tagged}
    assert tags == {KEY.digest}
    assert all(k.startswith("tk:") for k in tagged)
    per_user = [keys.tokens(KEY, "20261201"), keys.rate(KEY, 1), keys.user(KEY.user_id)]
    assert not any(part in k for k in tagged + per_user for part in ("G1", "odd", "U1"))
    assert ThreadKey.parse(KEY.id) == KEY


async def test_lock_claims_locks_and_detects_duplicates(store: Store) -> None:
    async with store.lock(KEY, claim="m1") as first:
        assert first.mapping == Mapping()
        with pytest.raises(Duplicate):
            await store.lock(KEY, claim="m1").acquire()
        with pytest.raises(LockBusy):
            await store.lock(KEY, claim="m2").acquire()
        assert await first.finish(FinishedTurn("conv_1", "conversations", [Turn(role="user", text="hi")]))
    async with store.lock(KEY) as again:
        assert again.mapping == Mapping("conv_1", "conversations")
    with pytest.raises(Duplicate):
        await store.lock(KEY, claim="m1").acquire()


async def test_release_drop_lets_a_redelivery_through(store: Store) -> None:
    async with store.lock(KEY, claim="m1") as lock:
        lock.mode = "drop"
    async with store.lock(KEY, claim="m1"):
        pass  # released "done" (the default with a claim)
    with pytest.raises(Duplicate):
        await store.lock(KEY, claim="m1").acquire()


async def test_a_cancelled_holder_drops_its_claim(store: Store) -> None:
    """Cancelled before saying anything: the redelivery of that message may try again."""
    entered = asyncio.Event()

    async def holder() -> None:
        async with store.lock(KEY, claim="m1"):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(holder())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with store.lock(KEY, claim="m1"):
        pass


async def test_lock_is_only_released_by_its_owner(store: Store) -> None:
    async with store.lock(KEY) as owner:
        with pytest.raises(LockBusy):
            await store.lock(KEY).acquire()  # the intruder's own clean-up must not free the lock
        with pytest.raises(LockBusy):
            await store.lock(KEY, wait=0.1).acquire()
        assert not owner.lost
    async with store.lock(KEY):
        pass


async def test_waiting_for_the_lock_then_taking_it(store: Store) -> None:
    holder = await store.lock(KEY).acquire()
    waiter = asyncio.create_task(store.lock(KEY, claim="m9", wait=10).acquire())
    await asyncio.sleep(0)
    assert not waiter.done()
    await holder.release()
    taken = await waiter
    await taken.release()


async def test_renewal_keeps_a_long_holder_and_its_claim(redis_url: str, prefix: str) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    short = Store(client, prefix=prefix, lock_ttl=1.2, dedupe_ttl=60)
    try:
        async with short.lock(KEY, claim="m1") as lock:
            for _ in range(3):  # several lifetimes: only renewal (every 0.4 s) keeps lock and claim
                await asyncio.sleep(1.2)
                with pytest.raises(LockBusy):
                    await short.lock(KEY).acquire()
            assert await client.get(short.keys.seen(KEY, "m1")) == f"p:{lock.token}"
            assert not lock.lost
    finally:
        await client.aclose()


async def test_index_and_delete_local(store: Store) -> None:
    other = ThreadKey("discord", "G1", "C2", "U1")
    for key, tid in ((KEY, "conv_a"), (other, "conv_b")):
        await record_turn(store, key, tid)
    assert {k for k, _ in await store.index_entries()} == {KEY, other}
    assert set(await store.user_keys(KEY.user_id)) == {KEY, other}
    assert not await store.delete_local(KEY, "conv_other")
    assert await store.delete_local(KEY, "conv_a")
    assert await store.get_thread(KEY) is None
    assert [k for k, _ in await store.index_entries()] == [other]
    assert await store.user_keys(KEY.user_id) == [other]


async def test_index_outlives_an_expired_mapping(store: Store) -> None:
    await record_turn(store, KEY, "conv_a")
    await store.redis.delete(store.keys.thread(KEY))
    record = await store.get_thread(KEY)
    assert record is not None and record.thread_id == "conv_a"


async def test_rate_window_tells_once(store: Store) -> None:
    verdicts = [await store.admit(KEY, (2, 60), 0) for _ in range(5)]
    assert verdicts == [("ok", ""), ("ok", ""), ("notify", "rate"), ("silent", "rate"), ("silent", "rate")]


async def test_budget_counts_tokens(store: Store) -> None:
    assert await store.admit(KEY, None, 100) == ("ok", "")
    await record_turn(store, KEY, "conv_a", input_tokens=80, output_tokens=30)
    assert await store.tokens_today(KEY) == 110
    assert await store.admit(KEY, None, 100) == ("notify", "budget")
    assert await store.admit(KEY, None, 100) == ("silent", "budget")
    record = await store.get_thread(KEY)
    assert record is not None and (record.input_tokens, record.output_tokens) == (80, 30)


async def test_acquire_is_idempotent_for_its_own_token(store: Store) -> None:
    """A client retry of the acquire script after a lost reply must not take our own claim for a duplicate."""
    lock = await store.lock(KEY, claim="m1").acquire()
    assert await lock.acquire() is lock
    with pytest.raises(Duplicate):
        await store.lock(KEY, claim="m1").acquire()
    await lock.release()


async def test_finish_writes_nothing_once_the_lock_is_gone(store: Store) -> None:
    lock = await store.lock(KEY, claim="m1").acquire()
    await store.redis.delete(store.keys.lock(KEY))
    assert not await lock.finish(FinishedTurn("conv_a", "conversations", [Turn(role="user", text="x")]))
    assert await store.get_thread(KEY) is None and await store.turns(KEY) == []
    with pytest.raises(Duplicate):
        await store.lock(KEY, claim="m1").acquire()


@pytest.mark.parametrize("cluster", [False, True], ids=["single", "cluster-order"])
async def test_who_said_what_is_kept_when_the_lock_lapsed(redis_url: str, prefix: str, cluster: bool) -> None:
    """The turn is not recorded, but erasure must still find the speaker's words in the conversation they are in
    (on a single Redis the record rides the turn's script, which writes nothing once the lock is gone)."""
    client = Redis.from_url(redis_url, decode_responses=True)
    store = Store(client, prefix=prefix, idle_ttl=3600, lock_ttl=5, dedupe_ttl=60, keep_items=4, cluster=cluster)
    shared = ThreadKey("slack", "T1", "C1/1700.1", "*")
    place = "slack:T1:C1/1700.1"
    try:
        await client.hset(store.keys.thread(shared), mapping={"thread_id": "conv_1", "backend": "conversations"})
        lock = await store.lock(shared, claim="m1").acquire()
        await client.delete(store.keys.lock(shared))  # lapsed: renewals failed while Redis was away
        record = SharedRecord(mark="1700.2", items=("msg_9",), wrote="alice", place=place)
        assert not await lock.finish(FinishedTurn("conv_1", "conversations", [], shared=record))
        assert await client.hget(store.keys.thread(shared), "by:alice") == "msg_9"
        assert await client.smembers(store.shared.person("alice")) == {shared.id}
        assert await store.shared.joined(place)
    finally:
        await client.aclose()


async def test_the_turn_is_recorded_when_its_shared_record_fails(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Who said what is bookkeeping: a Redis error there costs that (one warning), never the recorded turn."""
    shared = ThreadKey("slack", "T1", "C1/1700.1", "*")
    record = SharedRecord(items=("msg_9",), wrote="alice", place="slack:T1:C1/1700.1")
    await store.redis.set(store.shared.person("alice"), "not a set")  # SADD on it fails: WRONGTYPE
    lock = await store.lock(shared, claim="m1").acquire()
    with caplog.at_level(logging.WARNING):
        recorded = await lock.finish(FinishedTurn("conv_1", "conversations", [Turn(role="user", text="x")],
                                                  shared=record))
    assert recorded and await store.turns(shared) == [{"role": "user", "text": "x"}]
    assert any("who said what" in r.getMessage() for r in caplog.records)


async def test_a_replaced_thread_is_queued_for_deletion(store: Store) -> None:
    """A mapping that expired before the janitor came by must not orphan its remote thread."""
    await store.save_thread(KEY, "conv_old", "conversations")
    await store.redis.delete(store.keys.thread(KEY))
    await store.save_thread(KEY, "conv_new", "conversations")
    assert await owed(store) == {"conv_old": "conversations"}
    await store.save_thread(KEY, "conv_new", "conversations")
    assert await owed(store) == {"conv_old": "conversations"}
