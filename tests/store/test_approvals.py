"""Open tool approvals in a real Redis: only the asker decides, once, while open; the waiter reads it or closes it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.store.approvals import LINGER, ApprovalStore
from bot.store.keys import Keys

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
