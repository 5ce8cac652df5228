"""Installations and install states in a real Redis: sealed whole, named by digests, states used once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from bot.config import ConfigError
from bot.crypto import Sealer, Undecryptable
from bot.store.installations import Installations
from bot.store.keys import Keys

TOKEN = "xoxb-T0ACME-secret-token-value"
RECORD = {"team_id": "T0ACME", "team_name": "Acme Widgets", "bot_token": TOKEN, "bot_scopes": ["chat:write"]}


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


def port(redis: Redis, prefix: str, keys: str) -> Installations:
    return Installations(redis, Keys(prefix), Sealer(keys))


async def test_an_installation_is_sealed_whole_under_a_digest(redis: Redis, prefix: str) -> None:
    key = Fernet.generate_key().decode()
    installs = port(redis, prefix, key)
    await installs.save("slack", "T0ACME", RECORD)
    await installs.save("slack", "T0ACME", RECORD)  # installing again replaces
    stored = {k: await redis.get(k) if await redis.type(k) == "string" else await redis.smembers(k)
              async for k in redis.scan_iter(f"{prefix}:*")}
    assert len(stored) == 2 and await installs.count() == 1
    for clear in ("T0ACME", "Acme Widgets", TOKEN, "chat:write"):
        assert clear not in repr(stored)
    assert await installs.find("slack", "T0ACME") == RECORD
    assert await installs.find("slack", "T0OTHER") is None and await installs.find("discord", "T0ACME") is None
    assert await installs.delete("slack", "T0ACME") is True
    assert await installs.delete("slack", "T0ACME") is False
    assert [k async for k in redis.scan_iter(f"{prefix}:*")] == [] and await installs.count() == 0


async def test_keys_rotate_newest_first_and_a_lost_key_is_said_plainly(
    redis: Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    await port(redis, prefix, old).save("slack", "T0ACME", RECORD)
    rotated = port(redis, prefix, f"{new}, {old}")
    assert await rotated.find("slack", "T0ACME") == RECORD, "the old key still opens what it sealed"
    await rotated.save("slack", "T0ACME", RECORD)
    assert await port(redis, prefix, new).find("slack", "T0ACME") == RECORD, "written again with the new key"

    caplog.set_level(logging.ERROR, logger="threadkeeper.store")
    assert await port(redis, prefix, old).find("slack", "T0ACME") is None
    assert "cannot be decrypted with TOKEN_ENCRYPTION_KEY" in caplog.text and TOKEN not in caplog.text


async def test_a_state_is_consumed_once_by_whoever_comes_first(redis: Redis, prefix: str) -> None:
    installs = port(redis, prefix, Fernet.generate_key().decode())
    await installs.issue_state("state-one", 60)
    [key] = [k async for k in redis.scan_iter(f"{prefix}:oauthstate:*")]
    assert "state-one" not in key and 0 < await redis.ttl(key) <= 60, "kept under a digest, with a TTL"
    tries = await asyncio.gather(*(installs.consume_state("state-one") for _ in range(5)))
    assert sorted(tries) == [False, False, False, False, True]
    assert await installs.consume_state("never-issued") is False


@pytest.mark.parametrize("bad", ["", " , ", "not-a-fernet-key", "GOOD,short"])
def test_an_unusable_key_is_one_line_without_the_key(bad: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Sealer(bad.replace("GOOD", Fernet.generate_key().decode()))
    line = str(refused.value)
    assert line.startswith("TOKEN_ENCRYPTION_KEY is ") and "\n" not in line
    assert "not-a-fernet-key" not in line and "short" not in line
    assert ("key 2 of 2" in line) == bad.startswith("GOOD")


def test_a_value_sealed_with_another_key_does_not_open() -> None:
    with pytest.raises(Undecryptable):
        Sealer(Fernet.generate_key().decode()).open(Sealer(Fernet.generate_key().decode()).seal(b"x"))
