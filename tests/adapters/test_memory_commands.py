"""``/memory`` on Slack and Discord: what the bot remembers of the conversation here, privately."""

from __future__ import annotations

from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import command_form, dm_event, event_envelope
from tests.support.discord import StartBot, followup_to, wait_answer
from tests.support.slack import Slack


async def memory_reply(slack: Slack, n: int) -> dict[str, object]:
    status, _ = await slack.command(command_form("/memory", "", channel="D5",
                                                 response_url=slack.fake.response_url(f"memory{n}")))
    assert status == 200
    await slack.fake.wait_for(lambda: any(name == f"memory{n}" for name, _ in slack.fake.responses))
    return next(reply for name, reply in slack.fake.responses if name == f"memory{n}")


async def test_slack_memory_shows_what_is_kept_then_nothing_after_forget(
    slack: Slack, fake_openai: FakeOpenAI
) -> None:
    empty = await memory_reply(slack, 1)
    assert empty["response_type"] == "ephemeral" and empty["text"] == (
        "I don't remember anything of our conversation here.")
    assert await slack.event(event_envelope(dm_event("remember 42", channel="D5"))) == 200
    await slack.answers("D5", None)
    await slack.adapter.settle()
    kept = await memory_reply(slack, 2)
    assert "the last 2 messages" in str(kept["text"]) and "/forget" in str(kept["text"])
    await slack.command(command_form("/forget", "", channel="D5",
                                                 response_url=slack.fake.response_url("forget")))
    await slack.fake.wait_for(lambda: any(name == "forget" for name, _ in slack.fake.responses))
    assert (await memory_reply(slack, 3))["text"] == "I don't remember anything of our conversation here."
    assert slack.fake.count("chat.postEphemeral") == 0 and "/memory" in slack.adapter.registered_commands


async def test_discord_memory_is_private_and_names_how_to_erase_it(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot()
    await fake_discord.send_guild("remember me", mention_bot=True)
    await wait_answer(fake_discord, fake_discord.channel_id)
    followup = await followup_to(fake_discord, await fake_discord.invoke("memory"))
    assert followup.json["flags"] & 64  # only the asker sees it
    assert "the last 2 messages" in followup.json["content"] and "/forget" in followup.json["content"]
