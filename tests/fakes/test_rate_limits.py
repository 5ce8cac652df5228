"""The fakes rate-limit as Slack and Discord do, and the real clients cope with it.

Slack: the real ``AsyncWebClient`` gets HTTP 429 ``ratelimited`` with a whole-second ``Retry-After``, refused
calls change nothing, and slack_sdk's ``AsyncRateLimitErrorRetryHandler`` gets through after waiting. Discord:
the real ``discord.py`` ``HTTPClient`` reads the fake's ``X-RateLimit-*`` headers to stay under the limit, and
when a second client (a replica on the same token) overdraws the bucket, discord.py's own 429 handling retries
after ``retry_after`` and every edit lands.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import discord.http
import pytest
from discord.http import Route
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- Slack ------------------------------------------------------------------------------------------
@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def manual_slack(clock: ManualClock) -> AsyncIterator[FakeSlack]:
    async with FakeSlack(clock=clock) as fake:
        yield fake


def web_client(fake: FakeSlack, token: str = "xoxb-test", **kwargs: Any) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=fake.api_url, **kwargs)


async def refused(call: Awaitable[Any]) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


async def test_slack_limits_are_off_by_default(slack: FakeSlack) -> None:
    client = web_client(slack)
    for i in range(20):
        await client.chat_postMessage(channel="C1", text=f"m{i}")
    assert len(slack.messages) == 20 and slack.refused == [] and not any(c.refused for c in slack.calls)


async def test_slack_burst_over_the_limit_is_answered_like_slack(slack: FakeSlack) -> None:
    slack.rate_limit("chat.postMessage", per_second=0.5, burst=2)
    client = web_client(slack)
    await client.chat_postMessage(channel="C1", text="one")
    await client.chat_postMessage(channel="C2", text="two")
    error = await refused(client.chat_postMessage(channel="C3", text="three"))
    assert error.response.status_code == 429 and error.response.data == {"ok": False, "error": "ratelimited"}
    retry_after = error.response.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    assert [m.text for m in slack.replies()] == ["one", "two"]
    assert [c.refused for c in slack.calls] == [False, False, True]
    [refusal] = slack.refused
    assert refusal.key == ("chat.postMessage", "C3") and refusal.retry_after == int(retry_after)
    assert slack.last_refusal("chat.postMessage", "C3") == refusal


async def test_slack_per_channel_limit_for_posts(manual_slack: FakeSlack, clock: ManualClock) -> None:
    manual_slack.rate_limit_channel("chat.postMessage", per_second=1, burst=2)
    client = web_client(manual_slack)
    for text in ("a", "b"):
        await client.chat_postMessage(channel="C1", text=text)
    error = await refused(client.chat_postMessage(channel="C1", text="c"))
    assert error.response.headers["Retry-After"] == "1"
    await client.chat_postMessage(channel="C2", text="elsewhere")  # other channels have their own budget
    clock.now += 1.0
    await client.chat_postMessage(channel="C1", text="c")
    assert [m.text for m in manual_slack.in_thread("C1", None)] == ["a", "b", "c"]
    assert manual_slack.early_retries() == []


async def test_slack_limits_are_kept_per_workspace(manual_slack: FakeSlack) -> None:
    manual_slack.token_teams["xoxb-other"] = "T0OTHER"
    manual_slack.rate_limit("chat.postMessage", per_second=1, burst=1)
    ours, theirs = web_client(manual_slack), web_client(manual_slack, token="xoxb-other")
    await ours.chat_postMessage(channel="C1", text="ours")
    await theirs.chat_postMessage(channel="C1", text="theirs")
    await refused(ours.chat_postMessage(channel="C1", text="ours again"))
    await refused(theirs.chat_postMessage(channel="C1", text="theirs again"))
    assert [m.text for m in manual_slack.replies()] == ["ours", "theirs"]


async def test_slack_refused_calls_have_no_effect(manual_slack: FakeSlack, clock: ManualClock) -> None:
    fake = manual_slack
    client = web_client(fake)
    posted = await client.chat_postMessage(channel="C1", text="placeholder")
    stream = await client.chat_startStream(channel="C1", thread_ts="1.0", markdown_text="Hel")
    for method in ("chat.update", "chat.appendStream", "chat.stopStream", "chat.startStream",
                   "chat.postEphemeral", "assistant.threads.setStatus", "response_url"):
        fake.rate_limit(method, per_second=0.1, burst=1)
    await client.chat_update(channel="C1", ts=posted["ts"], text="first edit")
    await client.chat_appendStream(channel="C1", ts=stream["ts"], markdown_text="lo")
    await client.assistant_threads_setStatus(channel_id="C1", thread_ts="1.0", status="thinking")
    await client.chat_postEphemeral(channel="C1", user="U1", text="psst")
    await client.chat_startStream(channel="C2", thread_ts="2.0", markdown_text="x")
    await client.chat_stopStream(channel="C1", ts=stream["ts"], markdown_text="!")
    fake.fail_next("chat.update", "cant_update_message")
    before = (dict(fake.messages), [m.text for m in fake.messages.values()], list(fake.statuses))

    await refused(client.chat_update(channel="C1", ts=posted["ts"], text="second edit"))
    await refused(client.chat_appendStream(channel="C1", ts=stream["ts"], markdown_text="more"))
    await refused(client.chat_stopStream(channel="C1", ts=stream["ts"]))
    await refused(client.chat_startStream(channel="C2", thread_ts="2.0", markdown_text="y"))
    await refused(client.chat_postEphemeral(channel="C1", user="U1", text="psst"))
    await refused(client.assistant_threads_setStatus(channel_id="C1", thread_ts="1.0", status="again"))
    url = fake.response_url("cmd")
    assert (await AsyncWebhookClient(url).send(text="done")).status_code == 200
    answer = await AsyncWebhookClient(url).send(text="done again")
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "10"

    assert before == (dict(fake.messages), [m.text for m in fake.messages.values()], list(fake.statuses))
    assert fake.messages[posted["ts"]].updates == 1 and fake.messages[posted["ts"]].history[-1] == "first edit"
    assert fake.responses == [("cmd", {"text": "done"})]
    assert len(fake.refused) == 7
    clock.now += 10  # the failure queued before the refusal was not used up by it
    assert (await refused(client.chat_update(channel="C1", ts=posted["ts"], text="x"))).response["error"] == \
        "cant_update_message"


async def test_slack_retry_handler_waits_out_retry_after(slack: FakeSlack) -> None:
    slack.rate_limit("chat.postMessage", per_second=2, burst=1)
    slack.rate_limit("chat.update", per_second=2, burst=1)
    client = web_client(slack, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)])
    first = await client.chat_postMessage(channel="C1", text="one")
    await client.chat_update(channel="C1", ts=first["ts"], text="one, edited")
    await asyncio.gather(client.chat_postMessage(channel="C1", text="two"),  # both refused, both wait it out
                         client.chat_update(channel="C1", ts=first["ts"], text="one, edited again"))
    assert [m.text for m in slack.replies()] == ["one, edited again", "two"]
    assert [(r.method, r.retry_after) for r in slack.refused] == [("chat.postMessage", 1), ("chat.update", 1)]
    assert slack.early_retries() == [] and slack.duplicate_posts() == []


async def test_slack_early_retries_are_flagged(manual_slack: FakeSlack, clock: ManualClock) -> None:
    fake = manual_slack
    fake.rate_limit_channel("chat.postMessage", per_second=1, burst=1)
    fake.rate_limit("chat.update", per_second=1, burst=1)
    client = web_client(fake)
    first = await client.chat_postMessage(channel="C1", text="one")
    await refused(client.chat_postMessage(channel="C1", text="two"))
    clock.now += 0.5
    await refused(client.chat_postMessage(channel="C1", text="two"))  # back before Retry-After: 1
    refusal = fake.last_refusal("chat.postMessage", "C1")
    assert refusal is not None and refusal.at == clock.now and refusal.retry_after == 1
    clock.now += 1.0
    await client.chat_postMessage(channel="C1", text="two")
    await client.chat_update(channel="C1", ts=first["ts"], text="edit")
    await refused(client.chat_update(channel="C1", ts=first["ts"], text="edit 2"))
    await refused(client.chat_update(channel="C1", ts="1700000000.000002", text="other message"))
    early = fake.early_retries()
    assert [(c.method, c.payload["text"], c.refused) for c in early] == [("chat.postMessage", "two", True)]


async def test_slack_duplicate_posts(slack: FakeSlack) -> None:
    client = web_client(slack)
    await client.chat_postMessage(channel="C1", thread_ts="1.0", text="answer")
    await client.chat_postMessage(channel="C1", thread_ts="2.0", text="answer")
    await client.chat_postMessage(channel="C2", thread_ts="1.0", text="answer")
    assert slack.duplicate_posts() == []
    again = await client.chat_postMessage(channel="C1", thread_ts="1.0", text="answer")
    assert [m.ts for m in slack.duplicate_posts()] == [again["ts"]]


# ---- Discord ----------------------------------------------------------------------------------------
MakeClient = Callable[[], Awaitable[discord.http.HTTPClient]]


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    saved = Route.BASE
    async with FakeDiscord() as fake:
        Route.BASE = fake.api_base
        yield fake
    Route.BASE = saved


@pytest.fixture
async def make_client(fake_discord: FakeDiscord) -> AsyncIterator[MakeClient]:
    """A logged-in discord.py ``HTTPClient``; each one keeps its own idea of the rate limits, like a replica."""
    clients: list[discord.http.HTTPClient] = []

    async def make() -> discord.http.HTTPClient:
        client = discord.http.HTTPClient(asyncio.get_running_loop())
        clients.append(client)
        await client.static_login(fake_discord.token)
        return client

    yield make
    for client in clients:
        await client.close()


async def post(client: discord.http.HTTPClient, channel: str, content: str) -> Any:
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=channel)
    return await client.request(route, json={"content": content})


async def edit(client: discord.http.HTTPClient, channel: str, message: str, content: str) -> Any:
    route = Route("PATCH", "/channels/{channel_id}/messages/{message_id}", channel_id=channel, message_id=message)
    return await client.request(route, json={"content": content})


async def test_discord_answers_429_like_discord(fake_discord: FakeDiscord) -> None:
    fake_discord.edit_limit(per_channel=1, per_seconds=0.5)
    channel = fake_discord.channel_id
    headers = {"Authorization": f"Bot {fake_discord.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{fake_discord.api_base}/channels/{channel}/messages", json={"content": "hi"}) as r:
            assert "X-RateLimit-Limit" not in r.headers  # posts are not limited
            message = (await r.json())["id"]
        url = f"{fake_discord.api_base}/channels/{channel}/messages/{message}"
        async with http.patch(url, json={"content": "edit 1"}) as ok:
            assert ok.status == 200
            assert ok.headers["X-RateLimit-Limit"] == "1" and ok.headers["X-RateLimit-Remaining"] == "0"
            assert 0 < float(ok.headers["X-RateLimit-Reset-After"]) <= 0.5 and ok.headers["X-RateLimit-Bucket"]
        async with http.patch(url, json={"content": "edit 2"}) as limited:
            body = await limited.json()
            assert limited.status == 429 and limited.content_type == "application/json"
            assert set(body) == {"message", "retry_after", "global"} and body["global"] is False
            assert body["message"] == "You are being rate limited." and 0 < body["retry_after"] <= 0.5
            assert limited.headers["Retry-After"] == "1" and limited.headers["X-RateLimit-Remaining"] == "0"
            assert limited.headers["X-RateLimit-Scope"] == "user"
            assert float(limited.headers["X-RateLimit-Reset-After"]) == body["retry_after"]
            assert limited.headers["X-RateLimit-Bucket"] == ok.headers["X-RateLimit-Bucket"]
    assert fake_discord.messages[message]["content"] == "edit 1"
    assert [c.refused for c in fake_discord.find("PATCH", r".*")] == [False, True]
    [refusal] = fake_discord.refused
    assert refusal.key == ("PATCH", channel, message) and refusal.retry_after == body["retry_after"]


async def test_discord_py_stays_under_the_advertised_limit(fake_discord: FakeDiscord,
                                                           make_client: MakeClient) -> None:
    client = await make_client()
    channel = fake_discord.channel_id
    ids = [(await post(client, channel, f"m{i}"))["id"] for i in range(6)]
    fake_discord.edit_limit(per_channel=2, per_seconds=0.3)
    await asyncio.gather(*(edit(client, channel, mid, f"edited {mid}") for mid in ids))
    assert [fake_discord.messages[mid]["content"] for mid in ids] == [f"edited {mid}" for mid in ids]
    assert fake_discord.refused == []  # discord.py waited on the X-RateLimit-* headers instead


@pytest.mark.parametrize("route", ["edit", "post"])
async def test_discord_py_retries_after_a_replica_overdraws_the_bucket(
    fake_discord: FakeDiscord, make_client: MakeClient, route: str
) -> None:
    replicas = [await make_client(), await make_client()]
    channel = fake_discord.channel_id
    ids = [(await post(replicas[0], channel, f"m{i}"))["id"] for i in range(6)]
    getattr(fake_discord, f"{route}_limit")(per_channel=5, per_seconds=1.0)

    async def write(client: discord.http.HTTPClient, i: int) -> None:
        if route == "edit":
            await edit(client, channel, ids[i], f"edit {i}")
        else:
            await post(client, channel, f"post {i}")

    await asyncio.gather(*(write(replicas[i % 2], i) for i in range(6)))
    contents = {m["content"] for m in fake_discord.bot_messages(channel)}
    assert {f"{route} {i}" for i in range(6)} <= contents
    assert len(fake_discord.refused) >= 1 and any(c.refused for c in fake_discord.calls)
    assert fake_discord.early_retries() == []
