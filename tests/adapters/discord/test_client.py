"""The Discord adapter end to end: the real discord.py client against the loopback fake Discord.

The bot logs in over REST, syncs ``/forget``, connects the gateway websocket, and answers events the
tests push; assertions read the REST calls it made (what went out on the wire).
"""

from __future__ import annotations

import itertools
from typing import Any

from bot.errors import Unavailable
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.support.discord import StartBot, followup_to, message_posts, wait_answer


async def test_dm_is_answered(fake_discord: FakeDiscord, start_bot: StartBot) -> None:
    await start_bot()
    sent = await fake_discord.send_dm("hello there")
    [answer] = await wait_answer(fake_discord, sent["channel_id"], text="echo: hello there")
    assert answer["content"] == "echo: hello there"
    [post] = message_posts(fake_discord, sent["channel_id"])
    assert "message_reference" not in post.json  # DMs: a plain message, no reply quote


async def test_mention_is_answered_as_a_reply_without_the_mention(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot()
    sent = await fake_discord.send_guild("what's up?", mention_bot=True)
    [answer] = await wait_answer(fake_discord, fake_discord.channel_id, text="echo: what's up?")
    assert answer["content"] == "echo: what's up?"
    [post] = message_posts(fake_discord, fake_discord.channel_id)
    assert str(post.json["message_reference"]["message_id"]) == sent["id"]
    assert post.json["allowed_mentions"] == {"parse": [], "replied_user": True}


async def test_role_mention_is_answered_when_content_is_readable(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    """Autocomplete often picks the bot's managed role; Discord only shows that content with the intent."""
    await start_bot(discord_channels="1")  # any listed channel turns the message-content intent on
    await fake_discord.send_guild("ping by role", mention_role=True)
    [answer] = await wait_answer(fake_discord, fake_discord.channel_id, text="echo: ping by role")
    assert answer["content"] == "echo: ping by role"


async def test_open_threads_continue_without_a_mention(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot(discord_open_threads=True, discord_channels="1")
    sent = await fake_discord.send_guild("a question", mention_bot=True)
    await wait_answer(fake_discord, sent["id"], text="echo: a question")  # the thread takes the message's id
    await fake_discord.send_guild("a follow-up", channel_id=sent["id"])
    [_, answer] = await wait_answer(fake_discord, sent["id"], count=2, text="echo: a follow-up")
    assert answer["content"] == "echo: a follow-up"
    assert len(fake_openai.conversations) == 1


async def test_bots_own_messages_and_unmentioned_chatter_are_ignored(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot()
    await fake_discord.send_dm("from a bot", author=fake_discord.other_bot)
    await fake_discord.send_guild("bot mention", author=fake_discord.other_bot, mention_bot=True)
    await fake_discord.send_guild("myself", author=fake_discord.bot, mention_bot=True)
    await fake_discord.send_guild("chatter without a mention")
    await fake_discord.send_guild("@everyone is not a mention of me", mention_everyone=True)
    await fake_discord.send_guild("role mention, content withheld without the intent", mention_role=True)
    # Events are handled in order: once this one is answered, the ones above have been decided on.
    sentinel = await fake_discord.send_dm("sentinel")
    await wait_answer(fake_discord, sentinel["channel_id"])
    assert fake_discord.find("POST", r"/channels/\d+/messages") == message_posts(fake_discord, sentinel["channel_id"])
    assert not fake_discord.find("POST", rf"/channels/{fake_discord.channel_id}/typing")
    assert fake_openai.count("POST", "/v1/responses") == 1


async def test_typing_is_sent_before_the_answer(fake_discord: FakeDiscord, start_bot: StartBot) -> None:
    await start_bot()
    sent = await fake_discord.send_dm("type first")
    await wait_answer(fake_discord, sent["channel_id"])
    channel = sent["channel_id"]
    order = [c.path for c in fake_discord.calls if c.path.startswith(f"/channels/{channel}/")]
    assert order[0] == f"/channels/{channel}/typing"
    assert order.index(f"/channels/{channel}/typing") < order.index(f"/channels/{channel}/messages")


async def test_forget_is_ephemeral_and_the_next_message_starts_a_new_thread(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot()
    await fake_discord.send_guild("remember me", mention_bot=True)
    await wait_answer(fake_discord, fake_discord.channel_id)
    assert len(fake_openai.conversations) == 1

    interaction = await fake_discord.invoke("forget")
    followup = await followup_to(fake_discord, interaction)
    [callback] = fake_discord.find("POST", rf"/interactions/{interaction['id']}/{interaction['token']}/callback")
    assert callback.json == {"type": 5, "data": {"flags": 64}}  # deferred, ephemeral
    assert callback.at <= followup.at
    assert followup.json["flags"] & 64
    assert "forgotten" in followup.json["content"]
    assert fake_openai.conversations[next(iter(fake_openai.conversations))].deleted

    await fake_discord.send_guild("who am I?", mention_bot=True)
    await wait_answer(fake_discord, fake_discord.channel_id, count=2)
    assert len(fake_openai.conversations) == 2


async def test_forget_all_covers_every_channel_of_the_user(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot()
    await fake_discord.send_guild("one", mention_bot=True)
    await wait_answer(fake_discord, fake_discord.channel_id)
    sent = await fake_discord.send_dm("two")
    await wait_answer(fake_discord, sent["channel_id"])
    interaction = await fake_discord.invoke("forget", options=[{"name": "all", "type": 5, "value": True}])
    followup = await followup_to(fake_discord, interaction)
    assert followup.json["content"].startswith("Done: I've forgotten 1 conversation")  # the guild one
    assert sum(c.deleted for c in fake_openai.conversations.values()) == 1


def fenced_reply(text: str, _items: list[Any]) -> str:
    code = "\n".join(f"    print('line {i:03d} of a long code block')" for i in range(90))
    prose = "\n".join(f"Paragraph {i}: " + "words " * 30 for i in range(10))
    return f"{prose}\n\n```python\ndef main():\n{code}\n```\n\n{prose}"


async def test_long_answer_is_split_with_balanced_fences(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = fenced_reply
    full = fenced_reply("", [])
    assert len(full) > 5000
    await start_bot()
    await fake_discord.send_guild("long please", mention_bot=True)

    def complete() -> list[dict[str, Any]] | None:
        msgs = fake_discord.bot_messages(fake_discord.channel_id)
        return msgs if "\n".join(m["content"] for m in msgs).count("Paragraph 9") == 2 else None

    messages = await fake_discord.wait_for(complete)
    assert len(messages) >= 3
    assert all(len(m["content"]) <= 2000 for m in messages)
    assert all(m["content"].count("```") % 2 == 0 for m in messages)
    joined = "\n".join(m["content"] for m in messages)
    assert all(f"line {i:03d} of" in joined for i in range(90))
    assert sum("```python" in m["content"] for m in messages) >= 2  # the cut fence was reopened
    posts = message_posts(fake_discord, fake_discord.channel_id)
    assert "message_reference" in posts[0].json
    assert all("message_reference" not in p.json for p in posts[1:])


async def test_an_answer_with_everyone_pings_nobody(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = lambda _t, _i: (
        f"@everyone @here <@&{fake_discord.bot_role_id}> <@{fake_discord.bob['id']}> look at this"
    )
    fake_openai.stream_delay = 0.05
    await start_bot(edit_interval=0.01)
    await fake_discord.send_guild("ping them", mention_bot=True)
    await fake_discord.wait_for(
        lambda: [m for m in fake_discord.bot_messages(fake_discord.channel_id) if "look at this" in m["content"]])
    writes = [c for c in fake_discord.calls if c.method in ("POST", "PATCH") and "/messages" in c.path]
    assert writes
    for call in writes:
        mentions = call.json["allowed_mentions"]
        assert mentions["parse"] == []
        assert "users" not in mentions and "roles" not in mentions
    assert all(not c.json["allowed_mentions"].get("replied_user") for c in writes[1:])


async def test_answer_streams_by_throttled_edits(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    final = ("streaming " * 30).strip()
    fake_openai.reply = lambda _t, _i: "streaming " * 30
    fake_openai.stream_delay = 0.25
    await start_bot(edit_interval=0.3)
    sent = await fake_discord.send_dm("stream it")
    await fake_discord.wait_for(
        lambda: [m for m in fake_discord.bot_messages(sent["channel_id"]) if m["content"] == final])
    [post] = message_posts(fake_discord, sent["channel_id"])
    edits = fake_discord.find("PATCH", rf"/channels/{sent['channel_id']}/messages/\d+")
    assert len(post.json["content"]) < len(final)  # the first send came at the first delta
    assert len(edits) >= 2
    times = [post.at] + [e.at for e in edits[:-1]]
    # The last edit is the final render; every streamed one before it respects the interval.
    assert all(b - a >= 0.29 for a, b in itertools.pairwise(times))


async def test_errors_reach_the_user_as_one_sentence(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail_next(500, path_prefix="/v1/responses", times=10)
    await start_bot()
    sent = await fake_discord.send_dm("will fail")
    [answer] = await wait_answer(fake_discord, sent["channel_id"], text=Unavailable.user_message)
    assert answer["content"] == Unavailable.user_message


async def test_open_threads_answers_in_a_thread_and_continues_there(
    fake_discord: FakeDiscord, start_bot: StartBot, fake_openai: FakeOpenAI
) -> None:
    await start_bot(discord_open_threads=True)
    sent = await fake_discord.send_guild("start a thread", mention_bot=True)
    [opened] = await fake_discord.wait_for(
        lambda: fake_discord.find("POST", rf"/channels/{fake_discord.channel_id}/messages/{sent['id']}/threads"))
    thread_id = next(c for c in fake_discord.channels.values() if c.get("parent_id") == fake_discord.channel_id)["id"]
    assert opened.json["name"] == "start a thread"
    await wait_answer(fake_discord, thread_id, text="echo: start a thread")
    await fake_discord.send_guild("and continue", mention_bot=True, channel_id=thread_id)
    [_, second] = await wait_answer(fake_discord, thread_id, count=2, text="echo: and continue")
    assert second["content"] == "echo: and continue"
    assert len(fake_openai.conversations) == 1
    assert not fake_discord.bot_messages(fake_discord.channel_id)
