"""Fixtures and helpers for the Discord tests: the fake Discord and a bot started against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import discord.http
import pytest
from discord.gateway import DiscordWebSocket

from adapters.discord import DiscordAdapter
from bot.runtime import Runtime
from tests.fakes.discord_server import Call, FakeDiscord
from tests.support.fixtures import MakeRuntime

StartBot = Callable[..., Awaitable[DiscordAdapter]]


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    saved = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as fake:
        yield fake
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest.fixture
async def start_bot(fake_discord: FakeDiscord, make_runtime: MakeRuntime) -> AsyncIterator[StartBot]:
    """``await start_bot(**settings)``: a connected adapter on the fake Discord (closed afterwards)."""
    adapters: list[DiscordAdapter] = []

    async def start(edit_interval: float = 0.3, runtime: Runtime | None = None, **overrides: Any) -> DiscordAdapter:
        settings = {"discord_token": fake_discord.token, "discord_api_base": fake_discord.api_base, **overrides}
        runtime = runtime or await make_runtime(**settings)
        adapter = DiscordAdapter(runtime.core, runtime.settings, edit_interval=edit_interval)
        adapters.append(adapter)
        identified = len(fake_discord.identifies)
        await adapter.start()
        await fake_discord.wait_identified(identified + 1)
        return adapter

    yield start
    for adapter in adapters:
        await adapter.close()


async def followup_to(fake: FakeDiscord, interaction: dict[str, Any]) -> Call:
    """The one follow-up message the bot posts for a slash command, once it is there."""
    token = interaction["token"]
    [followup] = await fake.wait_for(lambda: fake.find("POST", rf"/webhooks/\d+/{token}"))
    return followup


def message_posts(fake: FakeDiscord, channel_id: str) -> list[Call]:
    return fake.find("POST", rf"/channels/{channel_id}/messages")


async def wait_answer(
    fake: FakeDiscord, channel_id: str, count: int = 1, *, text: str | None = None, within: float = 10.0
) -> list[dict[str, Any]]:
    """The bot's messages in a channel once there are ``count`` of them and the last one is finished.

    An answer streams: its message goes out at the first delta and is edited as the rest comes, so a
    message with *some* content is not the answer yet. With ``text``, this waits until the last message
    reads exactly ``text`` (a timeout says what it read instead); without, only until it has content,
    for a caller that needs to know an answer has started, not what it says.
    """
    def check() -> list[dict[str, Any]] | None:
        msgs = fake.bot_messages(channel_id)
        if len(msgs) < count or not msgs[-1]["content"]:
            return None
        return msgs if text is None or msgs[-1]["content"] == text else None

    try:
        return await fake.wait_for(check, within=within)
    except TimeoutError:
        shown = [m["content"] for m in fake.bot_messages(channel_id)]
        raise AssertionError(f"waited {within} s for {count} message(s) ending with {text!r}; saw {shown!r}") from None
