"""Many workspaces through Slack's install flow (OAuth), end to end through the real Bolt app.

The browser's part is played over HTTP against the running adapter (``/slack/install``, then the redirect with
the state cookie Bolt set); Slack's part by the loopback fake (``oauth.v2.access``, and every Web API call
recorded with the token it carried); installations and states live in the real Redis, and are read back raw
to show that nothing there names a token or a team in clear.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet

from adapters.slack import SLACK_BOT_SCOPES, SlackAdapter
from bot.config import ConfigError
from bot.domain import ThreadKey
from bot.runtime import Runtime
from tests.fakes.openai_files import turns, user_text
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_oauth import CLIENT_ID, CLIENT_SECRET
from tests.fakes.slack_server import BOT_USER_ID, FakeSlack, command_form, dm_event, event_envelope, mention_event
from tests.support.fixtures import MakeRuntime
from tests.support.slack import SECRET, Slack, StartSlack

COOKIE = "slack-app-oauth-state"
KEY = Fernet.generate_key().decode()
NEW, TWO = "T0NEW", "T0TWO"


def oauth(**more: Any) -> dict[str, Any]:
    return {"slack_bot_token": None, "slack_client_id": CLIENT_ID, "slack_client_secret": CLIENT_SECRET,
            "token_encryption_key": KEY, **more}


async def begin(slack: Slack) -> tuple[str, str]:
    """The installer opens /slack/install: (state from the cookie, the Location it is sent to)."""
    async with slack.http.get(f"{slack.url}/slack/install", allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        return resp.cookies[COOKIE].value, resp.headers["Location"]


async def finish(slack: Slack, code: str, state: str, cookie: str | None = None) -> tuple[int, str]:
    """Slack sends the installer's browser back with the code and the state (and the browser its cookie)."""
    async with slack.http.get(f"{slack.url}/slack/oauth_redirect", params={"code": code, "state": state},
                              headers={"Cookie": f"{COOKIE}={cookie or state}"}, allow_redirects=False) as resp:
        return resp.status, await resp.text()


async def install(slack: Slack, team: str, name: str = "") -> str:
    """A whole install of ``team``; the bot token Slack issued for it."""
    state, _ = await begin(slack)
    status, page = await finish(slack, slack.fake.oauth.grant(team, team_name=name), state)
    assert status == 200 and "Thank you" in page, page
    return slack.fake.oauth.tokens[team]


async def redis_dump(runtime: Runtime) -> str:
    """Every key under the test's prefix and every value in it, as one text."""
    redis: Any = runtime.redis
    parts: list[str] = []
    async for key in redis.scan_iter(match=f"{runtime.settings.redis_prefix}:*", count=1000):
        kind = await redis.type(key)
        if kind == "string":
            value: Any = await redis.get(key)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "set":
            value = await redis.smembers(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        else:
            value = kind
        parts.append(f"{key} = {value!r}")
    return "\n".join(parts)


def dm_from(team: str, text: str, channel: str) -> dict[str, Any]:
    return event_envelope({**dm_event(text, channel=channel), "team": team}, team=team)


def tokens_of(fake: FakeSlack, *methods: str) -> set[str | None]:
    return {c.token for c in fake.calls if c.method in methods}


@pytest.fixture
async def bot(start_slack: StartSlack) -> Slack:
    return await start_slack(**oauth())


async def test_install_redirects_to_the_authorize_page_with_the_scopes_and_a_state_in_redis(bot: Slack) -> None:
    state, location = await begin(bot)
    url = urlsplit(location)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{bot.fake.base}/oauth/v2/authorize"  # SLACK_API_URL's host
    query = parse_qs(url.query)
    assert query["client_id"] == [CLIENT_ID] and query["state"] == [state]
    assert query["scope"] == [",".join(SLACK_BOT_SCOPES)]
    redis: Any = bot.runtime.redis
    [key] = [k async for k in redis.scan_iter(match=f"{bot.runtime.settings.redis_prefix}:oauthstate:*")]
    assert state not in key, "the state is kept under its digest"
    assert 0 < await redis.ttl(key) <= 600


async def test_an_install_is_kept_sealed_and_that_team_is_answered_with_its_own_token(
    bot: Slack, fake_openai: FakeOpenAI
) -> None:
    token = await install(bot, NEW, "Acme Widgets")
    assert bot.fake.count("oauth.v2.access") == 1
    dump = await redis_dump(bot.runtime)
    assert ":install:" in dump
    for clear in (token, NEW, "Acme Widgets", token.split("-", 2)[2]):
        assert clear not in dump, f"{clear!r} is in Redis in clear"
    assert bot.runtime.installations is not None and await bot.runtime.installations.count() == 1

    installed_checks = bot.fake.count("auth.test")  # Bolt's own, while installing
    events = [dm_from(NEW, f"hello {i}", f"D{i}") for i in range(3)]
    assert await asyncio.gather(*(bot.event(e) for e in events)) == [200, 200, 200]  # a burst, all at once
    for i in range(3):
        [answer] = await bot.answers(f"D{i}", None)
        assert answer.text == f"echo: hello {i}"
    assert bot.fake.count("auth.test") == installed_checks + 1, "one auth.test for the workspace, not per event"
    assert tokens_of(bot.fake, "chat.postMessage", "chat.update") == {token}
    assert tokens_of(bot.fake, "auth.test") == {token}


async def test_two_workspaces_each_get_their_own_token_in_their_threads(bot: Slack) -> None:
    new, two = await install(bot, NEW), await install(bot, TWO)
    first = mention_event(f"<@{BOT_USER_ID}> one", channel="C1", user="U1NEW")
    second = mention_event(f"<@{BOT_USER_ID}> two", channel="C2", user="U2TWO")
    assert await bot.event(event_envelope({**first, "team": NEW}, team=NEW)) == 200
    assert await bot.event(event_envelope({**second, "team": TWO}, team=TWO)) == 200
    await bot.answers("C1", first["ts"])
    await bot.answers("C2", second["ts"])
    await bot.adapter.settle()
    streamed = {c.payload["channel"]: c.token for c in bot.fake.calls if c.method == "chat.startStream"}
    assert streamed == {"C1": new, "C2": two}
    reads = {c.token for c in bot.fake.calls if c.method == "users.info"}
    assert reads == {new, two}, "names are read with the token of the workspace they are in"


async def test_a_workspace_reads_threads_downloads_files_and_forgets_with_its_own_token(
    bot: Slack, fake_openai: FakeOpenAI
) -> None:
    new, two = await install(bot, NEW), await install(bot, TWO)
    installed = len(bot.fake.calls)
    bot.fake.files.token = new  # Slack serves NEW's files to NEW's token only
    root = bot.fake.user_says(f"<@{BOT_USER_ID}> hello", user="U1NEW", channel="C9", mention=True)
    assert await bot.event(event_envelope({**root, "team": NEW}, team=NEW)) == 200
    await bot.answers("C9", root["ts"])
    bot.fake.user_says("meanwhile, in the thread", user="U2NEW", channel="C9", thread_ts=root["ts"])
    follow = bot.fake.user_says(f"<@{BOT_USER_ID}> and this file?", user="U1NEW", channel="C9",
                                thread_ts=root["ts"], mention=True)
    follow["files"] = [bot.fake.files.host("notes.txt", b"remember the milk\n", mimetype="text/plain")]
    assert await bot.event(event_envelope({**follow, "team": NEW}, team=NEW)) == 200
    await bot.answers("C9", root["ts"], count=2)
    await bot.adapter.settle()
    assert tokens_of(bot.fake, "conversations.replies") == {new}, "the thread is read with its workspace's token"
    requests = bot.fake.files.requests_for(follow["files"][0]["id"])
    assert requests and {r.authorization for r in requests} == {f"Bearer {new}"} and bot.fake.files.refused == 0
    assert any("remember the milk" in user_text(body) for body in turns(fake_openai))

    form = command_form("/forget", "", response_url=bot.fake.response_url("forget"), team=NEW, channel="C9",
                        user="U1NEW")
    assert await bot.command(form) == (200, "")
    await bot.adapter.settle()
    [(_, said)] = bot.fake.responses
    assert "forgot" in said["text"].lower() or "forget" in said["text"].lower(), said
    assert all(c.deleted for c in fake_openai.conversations.values())
    reset = [c for c in bot.fake.calls if c.method == "chat.postMessage" and "reset" in str(c.payload.get("text"))]
    assert reset and {c.token for c in reset} == {new}, "the reset is said with the workspace's token"
    assert two not in {c.token for c in bot.fake.calls[installed:]}


async def test_a_second_worker_finishes_an_install_the_first_began(bot: Slack, start_slack: StartSlack) -> None:
    other = await start_slack(**oauth())
    state, _ = await begin(bot)
    status, page = await finish(other, bot.fake.oauth.grant(NEW), state)
    assert status == 200 and "Thank you" in page
    assert await bot.event(dm_from(NEW, "hi from the first", "D1")) == 200
    [answer] = await bot.answers("D1", None)
    assert answer.text == "echo: hi from the first"
    status, page = await finish(bot, bot.fake.oauth.grant(NEW), state)
    assert status == 401 and "invalid_state" in page, "a state is used once, whichever worker used it"


async def test_a_bad_state_or_code_gets_a_clear_page_and_a_log_line(
    bot: Slack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="threadkeeper.slack")
    status, page = await finish(bot, bot.fake.oauth.grant(NEW), "made-up-state")
    assert status == 401 and "Something Went Wrong" in page and "invalid_state" in page
    assert "a Slack install failed (invalid_state): the install link expired" in caplog.text

    state, _ = await begin(bot)
    status, page = await finish(bot, "not-a-code", state)
    assert status == 401 and "invalid_code" in page
    assert "a Slack install failed (invalid_code): Slack refused the code" in caplog.text

    state, _ = await begin(bot)
    status, page = await finish(bot, bot.fake.oauth.grant(NEW), state, cookie="another-browser")
    assert status == 400 and "invalid_browser" in page

    async with bot.http.get(f"{bot.url}/slack/oauth_redirect", params={"error": "access_denied", "state": state},
                            headers={"Cookie": f"{COOKIE}={state}"}) as resp:  # the installer said no on Slack's page
        assert resp.status == 200 and "access_denied" in await resp.text()
    assert "a Slack install failed (access_denied): the installer cancelled" in caplog.text
    assert bot.runtime.installations is not None and await bot.runtime.installations.count() == 0


async def test_the_log_names_no_forged_reason_and_no_code(bot: Slack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # every logger, Bolt's included
    state, _ = await begin(bot)
    forged = "x)\n2026-01-01 00:00:00 ERROR threadkeeper.core forged line"
    async with bot.http.get(f"{bot.url}/slack/oauth_redirect", params={"error": forged, "state": state},
                            headers={"Cookie": f"{COOKIE}={state}"}) as resp:
        assert resp.status == 200
    assert "a Slack install failed (unknown): the redirect named an error Slack does not send" in caplog.text
    assert "forged line" not in caplog.text

    state, _ = await begin(bot)
    code = bot.fake.oauth.grant(NEW)
    bot.fake.oauth.codes.pop(code)  # Slack no longer takes it
    status, _ = await finish(bot, code, state)
    assert status == 401 and "a Slack install failed (invalid_code)" in caplog.text
    assert code not in caplog.text and code.split(".")[1] not in caplog.text


async def test_a_workspace_without_an_installation_is_noted_once_and_told_nothing(
    bot: Slack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for i in range(3):
        assert await bot.event(dm_from(NEW, f"hello {i}", "D1")) == 200
    form = command_form("/forget", "", response_url=bot.fake.response_url("forget"), team=NEW)
    assert await bot.command(form) == (200, "")
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1 and "which has no installation here, are ignored" in loud[0].getMessage()
    assert NEW not in caplog.text and not any(r.exc_info for r in caplog.records)
    assert bot.fake.calls == [] and bot.fake.responses == [], "no apology through response_url, no Slack call"


async def test_app_uninstalled_erases_the_workspace_and_nothing_else(bot: Slack, fake_openai: FakeOpenAI) -> None:
    token = await install(bot, NEW, "Acme Widgets")
    await install(bot, TWO)
    mention = mention_event(f"<@{BOT_USER_ID}> in a channel", channel="C9")
    for envelope in (dm_from(NEW, "a dm", "D1"), event_envelope({**mention, "team": NEW}, team=NEW)):
        assert await bot.event(envelope) == 200
    await bot.answers("D1", None)
    await bot.answers("C9", mention["ts"])
    await bot.adapter.settle()
    theirs = set(fake_openai.conversations)
    assert await bot.event(dm_from(TWO, "kept", "D2")) == 200
    await bot.answers("D2", None)
    await bot.adapter.settle()
    kept = set(fake_openai.conversations) - theirs
    assert len(theirs) == 2 and len(kept) == 1

    gone = event_envelope({"type": "app_uninstalled", "event_ts": "1710000999.000100"}, team=NEW)
    assert await bot.event(gone) == 200
    await bot.adapter.settle()
    assert all(fake_openai.conversations[c].deleted for c in theirs)
    assert not any(fake_openai.conversations[c].deleted for c in kept)
    dump = await redis_dump(bot.runtime)
    for clear in (NEW, token, "Acme Widgets"):
        assert clear not in dump, f"{clear!r} is still in Redis"
    assert bot.runtime.installations is not None and await bot.runtime.installations.count() == 1

    answered = bot.fake.count("chat.postMessage")
    assert await bot.event(dm_from(NEW, "still there?", "D1")) == 200
    assert await bot.event(dm_from(TWO, "still here", "D2")) == 200
    await bot.answers("D2", None, count=2)
    await bot.adapter.settle()
    assert bot.fake.count("chat.postMessage") == answered + 1, "the uninstalled workspace is not answered"


async def redis_keys(runtime: Runtime) -> set[str]:
    redis: Any = runtime.redis
    return {k async for k in redis.scan_iter(match=f"{runtime.settings.redis_prefix}:*", count=1000)}


async def test_after_app_uninstalled_nothing_new_is_left_in_redis_or_in_memory(
    bot: Slack, fake_openai: FakeOpenAI
) -> None:
    await install(bot, NEW)
    before = await redis_keys(bot.runtime)
    bot.fake.add_user("U1NEW", "Ada")
    root = bot.fake.user_says(f"<@{BOT_USER_ID}> in a channel", user="U1NEW", channel="C9", mention=True)
    assert await bot.event(event_envelope({**root, "team": NEW}, team=NEW)) == 200
    await bot.answers("C9", root["ts"])
    bot.fake.user_says("a follow-up", user="U1NEW", channel="C9", thread_ts=root["ts"])
    follow = bot.fake.user_says(f"<@{BOT_USER_ID}> and this?", user="U1NEW", channel="C9", thread_ts=root["ts"],
                                mention=True)
    assert await bot.event(event_envelope({**follow, "team": NEW}, team=NEW)) == 200
    assert await bot.event(dm_from(NEW, "a dm", "D1")) == 200
    await bot.answers("C9", root["ts"], count=2)
    await bot.answers("D1", None)
    await bot.adapter.settle()
    assert bot.fake.count("conversations.replies") == 1  # the thread was read, so this process knows it
    assert await redis_keys(bot.runtime) - before, "the answers left their keys"

    assert await bot.event(event_envelope({"type": "app_uninstalled", "event_ts": "1710000999.3"}, team=NEW)) == 200
    await bot.adapter.settle()
    left = await redis_keys(bot.runtime) - before
    today = time.strftime("%Y%m%d", time.gmtime())
    writer = bot.runtime.store.keys.tokens(ThreadKey("slack", NEW, "-", "U1NEW"), today)
    assert left <= {writer}, "only the daily count of someone who wrote only in a shared conversation (a digest)"
    assert all(c.deleted for c in fake_openai.conversations.values())
    context: Any = bot.adapter.context
    assert not context._threads and not context._names, "what was read of the workspace is forgotten"


async def test_tokens_revoked_of_the_bot_erases_the_workspace_and_of_people_only_nothing(
    bot: Slack, fake_openai: FakeOpenAI
) -> None:
    await install(bot, NEW)
    people = {"type": "tokens_revoked", "tokens": {"oauth": ["U1USER"], "bot": []}, "event_ts": "1710000999.1"}
    assert await bot.event(event_envelope(people, team=NEW)) == 200
    await bot.adapter.settle()
    assert bot.runtime.installations is not None and await bot.runtime.installations.count() == 1
    assert await bot.event(dm_from(NEW, "remember me", "D1")) == 200
    await bot.answers("D1", None)
    await bot.adapter.settle()
    [conversation] = fake_openai.conversations.values()
    revoked = {**people, "tokens": {"bot": [BOT_USER_ID]}}
    assert await bot.event(event_envelope(revoked, team=NEW)) == 200
    await bot.adapter.settle()
    assert await bot.runtime.installations.count() == 0
    assert conversation.deleted and await bot.runtime.store.index_entries() == []


async def test_with_one_token_app_uninstalled_still_erases_that_workspace(
    slack: Slack, fake_openai: FakeOpenAI
) -> None:
    assert await slack.event(event_envelope(dm_event("remember me", channel="D3"))) == 200
    await slack.answers("D3", None)
    await slack.adapter.settle()
    [conversation] = fake_openai.conversations.values()
    gone = event_envelope({"type": "app_uninstalled", "event_ts": "1710000999.000200"})
    assert await slack.event(gone) == 200
    await slack.adapter.settle()
    assert conversation.deleted and await slack.runtime.store.index_entries() == []
    assert slack.runtime.installations is None


async def test_oauth_refuses_to_start_half_set_up(make_runtime: MakeRuntime, fake_slack: FakeSlack) -> None:
    base = {"slack_signing_secret": SECRET, "slack_api_url": fake_slack.api_url}
    cases = {
        "TOKEN_ENCRYPTION_KEY is required for Slack OAuth": oauth(token_encryption_key=None),
        "TOKEN_ENCRYPTION_KEY is not a Fernet key": oauth(token_encryption_key="not-a-key"),
        "SLACK_CLIENT_SECRET is required for Slack OAuth": oauth(slack_client_secret=None),
        "SLACK_APP_TOKEN: Slack OAuth serves its install pages in HTTP mode": oauth(slack_app_token="xapp-1"),
        "SLACK_BOT_TOKEN: with SLACK_CLIENT_ID set": oauth(slack_bot_token="xoxb-1"),
        "REDIS_URL is required for Slack OAuth": oauth(redis_url=""),  # the embedded store forgets at restart
    }
    for start, settings in cases.items():
        runtime = await make_runtime(**base, **settings)
        with pytest.raises(ConfigError) as refused:
            SlackAdapter(runtime)
        assert str(refused.value).startswith(start) and "\n" not in str(refused.value)
        key = settings.get("token_encryption_key") or ""
        assert not key or key not in str(refused.value)
