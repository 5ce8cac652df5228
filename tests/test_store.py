"""The store against a real Redis: keys, lock, dedupe, index, limits."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.keys import Keys
from bot.store import Store
from bot.types import ThreadKey

KEY = ThreadKey("discord", "G1", "C:odd{name}", "U1")


@pytest.fixture
async def store(redis_url: str, prefix: str) -> AsyncIterator[Store]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield Store(client, prefix=prefix, idle_ttl=3600, lock_ttl=5, dedupe_ttl=60, keep_items=4)
    await client.aclose()


def test_keys_share_one_hash_tag_per_thread() -> None:
    keys = Keys("tk")
    tagged = [keys.thread(KEY), keys.turns(KEY), keys.lock(KEY), keys.seen(KEY, "m1")]
    tags = {k[k.index("{") + 1 : k.index("}")] for k in tagged}
    assert tags == {KEY.id}
    assert all(k.startswith("tk:") for k in tagged)
    assert ThreadKey.parse(KEY.id) == KEY


async def test_begin_claims_locks_and_detects_duplicates(store: Store) -> None:
    first = await store.begin(KEY, "m1", "tok-a")
    assert first.status == "ok" and first.thread_id == ""
    assert (await store.begin(KEY, "m1", "tok-b")).status == "dup"
    assert (await store.begin(KEY, "m2", "tok-b")).status == "busy"
    await store.finish(KEY, "m1", "tok-a", "conv_1", "conversations", [{"role": "user", "text": "hi"}])
    again = await store.begin(KEY, None, "tok-b")
    assert again.status == "ok" and again.thread_id == "conv_1" and again.backend == "conversations"
    assert (await store.begin(KEY, "m1", "tok-c")).status == "dup"


async def test_release_drop_lets_a_redelivery_through(store: Store) -> None:
    assert (await store.begin(KEY, "m1", "tok-a")).status == "ok"
    await store.release(KEY, "m1", "tok-a", "drop")
    assert (await store.begin(KEY, "m1", "tok-b")).status == "ok"
    await store.release(KEY, "m1", "tok-b", "done")
    assert (await store.begin(KEY, "m1", "tok-c")).status == "dup"


async def test_lock_is_only_released_by_its_owner(store: Store) -> None:
    assert (await store.begin(KEY, None, "owner")).status == "ok"
    await store.release(KEY, None, "intruder", "keep")
    assert (await store.begin(KEY, None, "other")).status == "busy"
    assert await store.renew(KEY, None, "owner")
    assert not await store.renew(KEY, None, "other")
    await store.release(KEY, None, "owner", "keep")
    assert (await store.begin(KEY, None, "other")).status == "ok"


async def test_index_and_delete_local(store: Store) -> None:
    other = ThreadKey("discord", "G1", "C2", "U1")
    for key, tid in ((KEY, "conv_a"), (other, "conv_b")):
        await store.begin(key, None, "t")
        await store.finish(key, None, "t", tid, "conversations", [])
    assert {k for k, _ in await store.index_entries()} == {KEY, other}
    assert set(await store.user_keys(KEY.user_id)) == {KEY, other}
    assert not await store.delete_local(KEY, "conv_other")
    assert await store.delete_local(KEY, "conv_a")
    assert await store.get_thread(KEY) is None
    assert [k for k, _ in await store.index_entries()] == [other]
    assert await store.user_keys(KEY.user_id) == [other]


async def test_index_outlives_an_expired_mapping(store: Store) -> None:
    await store.begin(KEY, None, "t")
    await store.finish(KEY, None, "t", "conv_a", "conversations", [])
    await store.redis.delete(store.keys.thread(KEY))
    record = await store.get_thread(KEY)
    assert record is not None and record.thread_id == "conv_a"


async def test_rate_window_tells_once(store: Store) -> None:
    verdicts = [await store.admit(KEY, (2, 60), 0) for _ in range(5)]
    assert verdicts == [("ok", ""), ("ok", ""), ("notify", "rate"), ("silent", "rate"), ("silent", "rate")]


async def test_budget_counts_tokens(store: Store) -> None:
    assert await store.admit(KEY, None, 100) == ("ok", "")
    await store.begin(KEY, None, "t")
    await store.finish(KEY, None, "t", "conv_a", "conversations", [], input_tokens=80, output_tokens=30)
    assert await store.tokens_today(KEY) == 110
    assert await store.admit(KEY, None, 100) == ("notify", "budget")
    assert await store.admit(KEY, None, 100) == ("silent", "budget")
    record = await store.get_thread(KEY)
    assert record is not None and (record.input_tokens, record.output_tokens) == (80, 30)


async def test_begin_is_idempotent_for_its_own_token(store: Store) -> None:
    """A client retry of BEGIN after a lost reply must not take our own claim for a duplicate."""
    assert (await store.begin(KEY, "m1", "tok-a")).status == "ok"
    assert (await store.begin(KEY, "m1", "tok-a")).status == "ok"
    assert (await store.begin(KEY, "m1", "tok-b")).status == "dup"


async def test_finish_writes_nothing_once_the_lock_is_gone(store: Store) -> None:
    assert (await store.begin(KEY, "m1", "tok-a")).status == "ok"
    await store.redis.delete(store.keys.lock(KEY))
    assert not await store.finish(KEY, "m1", "tok-a", "conv_a", "conversations", [{"role": "user", "text": "x"}])
    assert await store.get_thread(KEY) is None and await store.turns(KEY) == []
    assert (await store.begin(KEY, "m1", "tok-b")).status == "dup"


async def test_a_replaced_thread_is_queued_for_deletion(store: Store) -> None:
    """A mapping that expired before the janitor came by must not orphan its remote thread."""
    await store.save_thread(KEY, "conv_old", "conversations")
    await store.redis.delete(store.keys.thread(KEY))
    await store.save_thread(KEY, "conv_new", "conversations")
    assert await store.tombstones() == {"conv_old": "conversations"}
    await store.save_thread(KEY, "conv_new", "conversations")
    assert await store.tombstones() == {"conv_old": "conversations"}
