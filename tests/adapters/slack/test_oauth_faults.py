"""Slack OAuth when something fails, through the real Bolt app over signed HTTP and the loopback fakes.

The adapter's Redis (the real one) is reached through a proxy that can cut it (Redis down: every command fails at
once) or freeze it (a process stopped between two of its Redis writes, then thawed or abandoned). Each failure is
answered without a traceback, with one log line that names a workspace by a digest only, except the line that
tells the operator which command to run.
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.ops import admin, janitor
from tests.adapters.slack.test_oauth import NEW, TWO, begin, dm_from, finish, install, oauth
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import event_envelope
from tests.support.fixtures import MakeRuntime
from tests.support.redis_proxy import FreezingRedisProxy
from tests.support.slack import Slack, StartSlack

GONE = {"type": "app_uninstalled", "event_ts": "1710000999.000100"}
REVOKED = {"type": "tokens_revoked", "tokens": {"bot": ["U0BOT"]}, "event_ts": "1710000999.000200"}


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[FreezingRedisProxy]:
    async with FreezingRedisProxy(redis_url, limit=10**12) as running:
        yield running


@pytest.fixture
async def bot(start_slack: StartSlack, proxy: FreezingRedisProxy) -> Slack:
    return await start_slack(**oauth(redis_url=proxy.url, lock_ttl=0.5))


def loud(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """WARNING and above, and never a traceback among them."""
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"
    return records


async def conversations_of(bot: Slack, fake_openai: FakeOpenAI, team: str, *channels: str) -> set[str]:
    """One answered DM in each channel of ``team``: the conversations made for them."""
    before = set(fake_openai.conversations)
    for channel in channels:
        assert await bot.event(dm_from(team, f"hello from {channel}", channel)) == 200
        await bot.answers(channel, None)
    await bot.adapter.settle()
    return set(fake_openai.conversations) - before


async def test_redis_down_an_event_is_answered_503_with_one_line(
    bot: Slack, proxy: FreezingRedisProxy, caplog: pytest.LogCaptureFixture
) -> None:
    await install(bot, NEW)
    caplog.set_level(logging.INFO)
    caplog.clear()
    proxy.cut()
    calls = len(bot.fake.calls)
    assert await bot.event(dm_from(NEW, "anyone there?", "D1")) == 503  # Slack delivers it again later
    [line] = loud(caplog)
    assert "answered 503 (Slack sends it again): its installation could not be read" in line.getMessage()
    assert NEW not in caplog.text
    assert len(bot.fake.calls) == calls, "nothing was sent to Slack"


async def test_slack_unreachable_for_auth_test_an_event_is_answered_503_with_one_line(
    bot: Slack, caplog: pytest.LogCaptureFixture
) -> None:
    await install(bot, NEW)
    caplog.set_level(logging.INFO)
    caplog.clear()
    await bot.fake.stop()  # the Web API is gone: auth.test of the workspace's token cannot be made
    assert await bot.event(dm_from(NEW, "anyone there?", "D1")) == 503
    [line] = loud(caplog)
    assert "answered 503 (Slack sends it again): auth.test could not be reached" in line.getMessage()
    assert NEW not in caplog.text


async def test_redis_down_the_install_pages_answer_503_with_one_line(
    bot: Slack, proxy: FreezingRedisProxy, caplog: pytest.LogCaptureFixture
) -> None:
    state, _ = await begin(bot)
    caplog.set_level(logging.INFO)
    caplog.clear()
    proxy.cut()
    async with bot.http.get(f"{bot.url}/slack/install", allow_redirects=False) as resp:
        assert resp.status == 503 and "Try again in a moment" in await resp.text()
    [line] = loud(caplog)
    assert line.getMessage().startswith("/slack/install answered 503: Redis is unavailable")
    caplog.clear()
    status, page = await finish(bot, bot.fake.oauth.grant(NEW), state)
    assert status == 503 and "Try again in a moment" in page
    [line] = loud(caplog)
    assert line.getMessage().startswith("/slack/oauth_redirect answered 503: Redis is unavailable")


async def test_redis_down_as_the_installation_is_saved_the_page_says_start_again(
    bot: Slack, proxy: FreezingRedisProxy, caplog: pytest.LogCaptureFixture
) -> None:
    state, _ = await begin(bot)
    granted = bot.fake.oauth.access

    def access(payload: dict[str, Any], authorization: str) -> dict[str, Any]:
        proxy.cut()  # the state was used; Redis goes before the installation is saved
        return granted(payload, authorization)

    bot.fake.oauth.access = access  # type: ignore[method-assign]
    caplog.set_level(logging.INFO)
    code = bot.fake.oauth.grant(NEW)
    status, page = await finish(bot, code, state)
    assert status == 503 and "start again at /slack/install" in page
    [line] = loud(caplog)
    assert line.getMessage().startswith("a Slack install failed (storage_error): the installation could not be "
                                        "stored")
    assert code not in caplog.text


async def test_redis_down_at_app_uninstalled_one_error_names_the_command_that_finishes_it(
    bot: Slack, proxy: FreezingRedisProxy, fake_openai: FakeOpenAI, make_runtime: MakeRuntime,
    caplog: pytest.LogCaptureFixture
) -> None:
    await install(bot, NEW)
    theirs = await conversations_of(bot, fake_openai, NEW, "D1", "D2")
    caplog.set_level(logging.INFO)
    caplog.clear()
    proxy.cut()
    assert await bot.event(event_envelope(GONE, team=NEW)) == 200
    await bot.adapter.settle()
    [line] = loud(caplog)
    assert line.levelno == logging.ERROR
    assert line.getMessage().endswith(f"run python -m bot threads forget-workspace slack {NEW}")
    assert not any(fake_openai.conversations[c].deleted for c in theirs)

    operator = await make_runtime(token_encryption_key=oauth()["token_encryption_key"])  # Redis is back
    out, err = io.StringIO(), io.StringIO()
    assert await admin.main(operator, ["forget-workspace", "slack", NEW], out=out, err=err) == 0, err.getvalue()
    assert out.getvalue() == (f"Erased 2 threads of slack workspace {NEW}; its installation was deleted (the app "
                              "must be installed there again to answer).\n")
    assert all(fake_openai.conversations[c].deleted for c in theirs)
    assert operator.installations is not None and await operator.installations.count() == 0


async def test_an_uninstall_cut_short_is_finished_by_the_janitor(
    bot: Slack, proxy: FreezingRedisProxy, fake_openai: FakeOpenAI, make_runtime: MakeRuntime
) -> None:
    await install(bot, NEW)
    await install(bot, TWO)
    theirs = await conversations_of(bot, fake_openai, NEW, "D1", "D2")
    kept = await conversations_of(bot, fake_openai, TWO, "D3")
    proxy.limit = proxy.forwarded + 4  # the mark, the index, then into the first thread's deletion
    assert await bot.event(event_envelope(GONE, team=NEW)) == 200
    await proxy.frozen.wait()
    await bot.adapter.stop(0.1)  # the process dies mid-erasure (Slack will not send the event again)

    later = await make_runtime(token_encryption_key=oauth()["token_encryption_key"])
    assert len(await later.store.erasures.pending()) == 1
    assert not all(fake_openai.conversations[c].deleted for c in theirs), "the erasure was cut short"
    assert later.installations is not None and await later.installations.count() == 2, "installation goes last"
    result = await janitor.run_pass(later)
    assert result.erasures == 1
    assert all(fake_openai.conversations[c].deleted for c in theirs)
    assert not any(fake_openai.conversations[c].deleted for c in kept)
    assert await later.installations.count() == 1 and await later.store.erasures.pending() == {}
    assert {k.workspace for k, _ in await later.store.index_entries()} == {TWO}


async def test_app_uninstalled_and_tokens_revoked_together_erase_once(
    bot: Slack, proxy: FreezingRedisProxy, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    await install(bot, NEW)
    theirs = await conversations_of(bot, fake_openai, NEW, "D1")
    caplog.set_level(logging.INFO)
    proxy.limit = proxy.forwarded  # the first erasure waits on Redis while Slack sends the second event
    assert await bot.event(event_envelope(GONE, team=NEW)) == 200
    await proxy.frozen.wait()
    assert await bot.event(event_envelope(REVOKED, team=NEW)) == 200
    proxy.thaw()
    await bot.adapter.settle()
    [done] = [r.getMessage() for r in caplog.records if "removed the app" in r.getMessage()]
    assert "its installation is gone and 1 threads erased" in done and NEW not in done
    [conversation] = theirs
    deletes = [p for m, p in fake_openai.calls if m == "DELETE" and p == f"/v1/conversations/{conversation}"]
    assert len(deletes) == 1
    assert bot.runtime.installations is not None and await bot.runtime.installations.count() == 0
