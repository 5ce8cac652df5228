"""Discord in the conversation: replies bring what they answer, a reply to the bot continues its conversation,
forwards are read, threads the bot was called into are followed, and a mention can bring recent channel talk.

The real discord.py client against the loopback fake Discord (gateway and REST); the fake keeps what people
sent, so the bot can fetch a replied-to message or read a channel's history, with content withheld without the
message-content intent as Discord does. The fake OpenAI's recorded requests show what the model was given.
"""

from __future__ import annotations

from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.support.discord import StartBot, wait_answer
from tests.support.inputs import inputs

CONTENT_INTENT = {"discord_channels": "1"}
"""Any listed channel turns the message-content intent on (reading others' messages needs it)."""


async def answered(fake: FakeDiscord, channel_id: str, count: int = 1) -> bool:
    """Until the ``count``-th answer in the channel is complete (the echo of a turn with context ends in "?")."""
    await fake.wait_for(lambda: len(msgs := fake.bot_messages(channel_id)) >= count
                        and msgs[-1]["content"].startswith("echo:") and msgs[-1]["content"].endswith("?"))
    return True


async def test_a_reply_to_someone_else_brings_that_message_and_its_chain(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot(**CONTENT_INTENT)
    fake = fake_discord
    alert = await fake.send_guild("alert: disk 91% on db-2", author=fake.other_bot)
    cause = await fake.send_guild("that's the log volume again", author=fake.bob, reply_to=alert)
    await fake.send_guild("should we rotate?", mention_bot=True, reply_to=cause, ping=False)
    [sent] = inputs(fake_openai) if await answered(fake, fake.channel_id) else []
    assert "otherbot (a bot) wrote:\n> alert: disk 91% on db-2" in sent
    assert "bob wrote:\n> that's the log volume again" in sent
    assert sent.index("alert: disk") < sent.index("log volume") and sent.endswith("should we rotate?")
    assert fake.find("GET", rf"/channels/{fake.channel_id}/messages/{alert['id']}"), "the chain's next link, fetched"


async def test_a_reply_to_the_bots_answer_continues_its_conversation_without_a_mention(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot()
    fake = fake_discord
    await fake.send_guild("remember the number 7", mention_bot=True)
    [answer] = await wait_answer(fake, fake.channel_id, text="echo: remember the number 7")
    # A reply pings the author of the message it answers: Discord counts it as mentioning the bot.
    await fake.send_guild("which number was it?", reply_to=answer)
    await wait_answer(fake, fake.channel_id, count=2, text="echo: which number was it?")
    assert inputs(fake_openai)[-1] == "which number was it?", "the bot's own answer is not quoted back"
    assert len(fake_openai.conversations) == 1, "the same conversation goes on"


async def test_a_reply_to_the_bot_without_the_ping_is_answered_where_content_is_readable(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot(**CONTENT_INTENT)
    fake = fake_discord
    await fake.send_guild("hello", mention_bot=True)
    [answer] = await wait_answer(fake, fake.channel_id, text="echo: hello")
    await fake.send_guild("and again, quietly", reply_to=answer, ping=False)
    await wait_answer(fake, fake.channel_id, count=2, text="echo: and again, quietly")
    assert len(fake_openai.conversations) == 1


async def test_a_forwarded_message_is_read_and_answered(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot()
    sent = await fake_discord.forward("The offsite moved to Thursday 3pm, room B.")
    [answer] = await wait_answer(fake_discord, sent["channel_id"])
    [request] = inputs(fake_openai)
    assert "someone (forwarded by alice) wrote:\n> The offsite moved to Thursday 3pm, room B." in request
    assert answer["content"].startswith("echo:")


async def test_a_thread_the_bot_was_called_into_is_followed_and_others_are_not(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot(**CONTENT_INTENT)
    fake = fake_discord
    called = await fake.user_thread("incident 42")
    ignored = await fake.user_thread("lunch")
    await fake.send_guild("what do we know?", mention_bot=True, channel_id=called)
    await wait_answer(fake, called, text="echo: what do we know?")
    await fake.send_guild("nothing in the lunch thread for you", channel_id=ignored)
    await fake.send_guild(f"<@{fake.alice['id']}> can you page on-call?", author=fake.bob, channel_id=called)
    await fake.send_guild("the logs say OOM", author=fake.bob, channel_id=called)
    [_, answer] = await wait_answer(fake, called, count=2, text="echo: the logs say OOM")
    assert answer["content"] == "echo: the logs say OOM"
    assert fake_openai.count("POST", "/v1/responses") == 2, "the lunch thread and the aside were left alone"
    assert fake.bot_messages(ignored) == []


async def test_a_mention_brings_the_recent_channel_messages(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot(discord_channel_context=3)
    fake = fake_discord
    await fake.send_guild("too old to come along", author=fake.bob)
    for text in ("the release is at 5", "QA signed off"):
        await fake.send_guild(text, author=fake.bob)
    await fake.send_guild("nightly build: green", author=fake.other_bot)
    await fake.send_guild("anything blocking?", mention_bot=True)
    [sent] = inputs(fake_openai) if await answered(fake, fake.channel_id) else []
    assert "bob wrote:\n> the release is at 5" in sent and "bob wrote:\n> QA signed off" in sent
    assert "otherbot (a bot) wrote:\n> nightly build: green" in sent
    assert "too old" not in sent

    await fake.send_guild("and now?", mention_bot=True)
    await wait_answer(fake, fake.channel_id, count=2, text="echo: and now?")
    assert inputs(fake_openai)[-1] == "and now?", "lines already brought in are not brought again"
