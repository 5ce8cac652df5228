"""Open tool approvals in a real Redis: only the asker decides, once, while open; the waiter reads it or closes it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.store.approvals import LINGER, ApprovalStore
from bot.store.keys import Keys
from tests.support.redis_proxy import FreezingRedisProxy

TOKEN = "tok-Zx81_secret-token-value"
ASKER = "asker-digest"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def approvals(redis: Redis, prefix: str) -> ApprovalStore:
    return ApprovalStore(redis, Keys(prefix), poll=0.01)


async def test_only_the_asker_decides_and_only_once(approvals: ApprovalStore, redis: Redis, prefix: str) -> None:
    await approvals.open(TOKEN, ASKER, "docs: create_ticket", ttl=30)
    [key] = [k async for k in redis.scan_iter(f"{prefix}:approval:*")]
    assert TOKEN not in key and ASKER not in key, "the key names a digest of the token, nobody"
    stored = " ".join(await redis.hvals(key))  # type: ignore[misc]
    assert ASKER not in stored and TOKEN not in stored, "nor does the hash: /forget all leaves nothing naming them"
    assert 30 < await redis.ttl(key) <= 30 + LINGER

    assert await approvals.decide(TOKEN, "someone-else", True) == ("not_yours", "")
    assert await approvals.decide("a-forged-token", ASKER, True) == ("gone", "")
    waiting = asyncio.create_task(approvals.wait(TOKEN, within=10))
    assert await approvals.decide(TOKEN, ASKER, False) == ("decided", "docs: create_ticket")
    assert await waiting is False
    assert await approvals.decide(TOKEN, ASKER, True) == ("gone", "docs: create_ticket"), "decided once"


async def test_no_decision_in_time_closes_the_approval(approvals: ApprovalStore) -> None:
    await approvals.open(TOKEN, ASKER, "docs: create_ticket", ttl=0.05)
    assert await approvals.wait(TOKEN, within=0.05) is None
    assert await approvals.decide(TOKEN, ASKER, True) == ("gone", "docs: create_ticket"), "too late"


async def test_a_decision_made_as_the_wait_ends_is_the_one_read(approvals: ApprovalStore) -> None:
    """The waiter closes the approval in one script: a click just before it is read, never lost."""
    await approvals.open(TOKEN, ASKER, "docs: create_ticket", ttl=30)
    assert await approvals.decide(TOKEN, ASKER, True) == ("decided", "docs: create_ticket")
    assert await approvals.wait(TOKEN, within=0) is True


async def test_a_wait_given_up_closes_the_approval_so_a_later_click_runs_nothing(approvals: ApprovalStore) -> None:
    """Closing reads what was decided before it; after it, the asker's click is told the request is gone."""
    await approvals.open(TOKEN, ASKER, "docs: create_ticket", ttl=30)
    assert await approvals.close(TOKEN) is None
    assert await approvals.decide(TOKEN, ASKER, True) == ("gone", "docs: create_ticket")
    await approvals.open("another-token", ASKER, "docs: create_ticket", ttl=30)
    assert await approvals.decide("another-token", ASKER, True) == ("decided", "docs: create_ticket")
    assert await approvals.close("another-token") is True


async def test_a_cancelled_wait_stops_even_when_the_cancel_lands_on_a_redis_reply(approvals: ApprovalStore) -> None:
    """Cancelled while its first poll's reply is arriving (redis-py's ``wait_for`` would swallow it on 3.11)."""
    await approvals.open(TOKEN, ASKER, "docs: create_ticket", ttl=30)
    waiting = asyncio.create_task(approvals.wait(TOKEN, within=30))
    await asyncio.sleep(0)  # the poll is sent; its reply comes with the cancel
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, 5)


async def test_a_wait_reads_a_decision_made_while_its_redis_did_not_answer(
    approvals: ApprovalStore, redis_url: str, prefix: str
) -> None:
    """The waiter's polls fail for a while (its Redis stops answering); the asker's click lands at another
    worker meanwhile; once its Redis answers again, the waiter reads that decision instead of giving up."""
    async with FreezingRedisProxy(redis_url, limit=10**9) as proxy:
        client = Redis.from_url(proxy.url, decode_responses=True, socket_timeout=0.2)
        waiter = ApprovalStore(client, Keys(prefix), poll=0.01)
        try:
            await waiter.open(TOKEN, ASKER, "docs: create_ticket", ttl=30)
            proxy.limit = proxy.forwarded  # the waiter's Redis stops answering
            waiting = asyncio.create_task(waiter.wait(TOKEN, within=30))
            await proxy.frozen.wait()
            assert await approvals.decide(TOKEN, ASKER, True) == ("decided", "docs: create_ticket")
            proxy.limit, _ = 10**9, proxy.frozen.clear()
            assert await waiting is True
        finally:
            await client.aclose()
