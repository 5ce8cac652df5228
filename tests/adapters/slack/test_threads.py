"""Slack threads end to end: the bot reads the thread it is called into, follows it, and one thread is one
conversation for everyone in it.

Signed events go to the real Bolt app; the real ``AsyncWebClient`` reads threads (``conversations.replies``)
and names (``users.info``) from the loopback fake Slack, which keeps what people wrote
(:meth:`FakeSlack.user_says`); the core runs on the real Redis and the fake OpenAI, whose recorded requests
show what the model was given.
"""

from __future__ import annotations

import io
import logging

import pytest

from bot.domain import ThreadKey, hash_user
from bot.ops import admin
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import BOT_USER_ID, TEAM_ID, FakeSlack, command_form, event_envelope
from tests.support.erasure import leftovers
from tests.support.inputs import inputs
from tests.support.slack import JSON, Slack, StartSlack

ADA, BRAM, CHIDI = "U1ADA", "U2BRAM", "U3CHIDI"
CHANNEL = "C1TEAM"
READS = ("conversations.replies", "users.info")


def reads(fake: FakeSlack) -> list[str]:
    return [c.method for c in fake.calls if c.method in READS]


def people(fake: FakeSlack) -> None:
    fake.add_user(ADA, "Ada")
    fake.add_user(BRAM, "Bram")
    fake.add_user(CHIDI, "Chidi")


async def ada_opens(slack: Slack, text: str) -> JSON:
    """Ada mentions the bot at the top of CHANNEL with ``text``; returns her message once it is answered."""
    people(slack.fake)
    root = slack.fake.user_says(f"<@{BOT_USER_ID}> {text}", user=ADA, channel=CHANNEL, mention=True)
    assert await slack.event(event_envelope(root)) == 200
    await slack.answers(CHANNEL, root["ts"])
    return root


async def bram_follows(slack: Slack, root: JSON, text: str, count: int = 2) -> None:
    """Bram writes ``text`` in the thread without a mention; waits for ``count`` answers and settles."""
    follow_up = slack.fake.user_says(text, user=BRAM, channel=CHANNEL, thread_ts=root["ts"])
    assert await slack.event(event_envelope(follow_up)) == 200
    await slack.answers(CHANNEL, root["ts"], count=count)
    await slack.adapter.settle()


async def forget(slack: Slack, scope: str, url: str) -> None:
    """Ada's ``/forget <scope>`` in CHANNEL, through to its one delayed response."""
    fake = slack.fake
    status, _ = await slack.command(command_form("/forget", scope, user=ADA, channel=CHANNEL,
                                                 response_url=fake.response_url(url)))
    assert status == 200
    await fake.wait_for(lambda: len(fake.responses) == 1)


async def a_thread_with_five_messages(slack: Slack) -> str:
    """Five messages from three people, the first one opening the thread; returns the thread's root."""
    fake = slack.fake
    root = fake.user_says("Deploy of v2 failed on the EU cluster", user=ADA, channel=CHANNEL)["ts"]
    for user, text in [(BRAM, "the migration timed out, I think"), (CHIDI, "it is the lock on orders"),
                       (ADA, "can we retry with a longer timeout?"), (BRAM, "tried: same error")]:
        fake.user_says(text, user=user, channel=CHANNEL, thread_ts=root)
    return str(root)


async def test_a_mention_in_a_thread_brings_its_earlier_messages_with_who_wrote_them(
    slack: Slack, fake_openai: FakeOpenAI
) -> None:
    people(slack.fake)
    root = await a_thread_with_five_messages(slack)
    mention = slack.fake.user_says(f"<@{BOT_USER_ID}> what should we do?", user=CHIDI, channel=CHANNEL,
                                   thread_ts=root, mention=True)
    assert await slack.event(event_envelope(mention)) == 200
    [answer] = await slack.answers(CHANNEL, root)
    await slack.adapter.settle()

    [sent] = inputs(fake_openai)
    for name, text in [("Ada", "Deploy of v2 failed on the EU cluster"), ("Bram", "the migration timed out"),
                       ("Chidi", "it is the lock on orders"), ("Ada", "can we retry with a longer timeout?"),
                       ("Bram", "tried: same error")]:
        assert f"{name} wrote:\n> {text}" in sent
    assert sent.index("Deploy of v2") < sent.index("tried: same error"), "oldest first"
    assert sent.endswith("Chidi: what should we do?"), "the turn is attributed to its speaker"
    assert "@example.com" not in sent and ADA not in sent, "names only: no e-mail address, no user id"
    assert answer.text.startswith("echo: ")
    assert reads(slack.fake).count("conversations.replies") == 1


async def test_follow_ups_are_answered_without_a_mention_and_bring_what_others_wrote_once(
    slack: Slack, fake_openai: FakeOpenAI
) -> None:
    fake = slack.fake
    people(fake)
    root = await a_thread_with_five_messages(slack)
    mention = fake.user_says(f"<@{BOT_USER_ID}> ideas?", user=ADA, channel=CHANNEL, thread_ts=root, mention=True)
    assert await slack.event(event_envelope(mention)) == 200
    await slack.answers(CHANNEL, root)
    await slack.adapter.settle()

    # Meanwhile: a message for someone else (left alone), and another bot's status line.
    aside = fake.user_says(f"<@{CHIDI}> can you check the lock?", user=BRAM, channel=CHANNEL, thread_ts=root)
    status = fake.bot_says("deploy pipeline: failed (exit 3)", name="ci-bot", channel=CHANNEL, thread_ts=root)
    before = (len(fake_openai.requests), len(fake.calls))
    for event in (aside, status):
        assert await slack.event(event_envelope(event)) == 200
    await slack.adapter.settle()
    assert (len(fake_openai.requests), len(fake.calls)) == before, "not answered, nothing read"

    calls = len(fake.calls)
    follow_up = fake.user_says("ok, and after the retry?", user=BRAM, channel=CHANNEL, thread_ts=root)
    assert await slack.event(event_envelope(follow_up)) == 200
    _, answer = await slack.answers(CHANNEL, root, count=2)
    await slack.adapter.settle()
    assert answer.text.startswith("echo: ") and answer.thread_ts == root, "answered in the thread"
    sent = inputs(fake_openai)[-1]
    assert sent.endswith("Bram: ok, and after the retry?")
    assert "Bram wrote:\n> @Chidi can you check the lock?" in sent
    assert "ci-bot (a bot) wrote:\n> deploy pipeline: failed (exit 3)" in sent
    assert "Deploy of v2" not in sent and "echo:" not in sent, "earlier lines and the bot's own answer: not again"
    assert [c.method for c in fake.calls[calls:] if c.method in READS] == ["conversations.replies"], \
        "one Slack read on this turn (names are cached)"

    again = fake.user_says("thanks", user=ADA, channel=CHANNEL, thread_ts=root)
    assert await slack.event(event_envelope(again)) == 200
    await slack.answers(CHANNEL, root, count=3)
    await slack.adapter.settle()
    last = inputs(fake_openai)[-1]
    assert last == "Ada: thanks", "what was brought in once is not brought again"
    assert len(fake_openai.active_conversations) == 1, "one conversation for the whole thread"


async def test_other_threads_and_top_level_messages_are_never_read_nor_answered(
    slack: Slack, fake_openai: FakeOpenAI
) -> None:
    fake = slack.fake
    elsewhere = fake.user_says("a thread the bot never saw", user=ADA, channel=CHANNEL)["ts"]
    events = [fake.user_says("a reply there", user=BRAM, channel=CHANNEL, thread_ts=elsewhere),
              fake.user_says("lunch anyone?", user=BRAM, channel=CHANNEL),
              fake.user_says("private channel chatter", user=BRAM, channel="G1PRIV", channel_type="group",
                             thread_ts=elsewhere)]
    calls = len(fake.calls)
    for event in events:
        assert await slack.event(event_envelope(event)) == 200
    await slack.adapter.settle()
    assert fake_openai.requests == [], "no assistant call"
    assert fake.calls[calls:] == [], "no Slack call"
    assert slack.adapter.events_received == len(events)


async def test_a_mention_arriving_as_two_events_is_answered_once(slack: Slack, fake_openai: FakeOpenAI) -> None:
    fake = slack.fake
    root = fake.user_says(f"<@{BOT_USER_ID}> start", user=ADA, channel=CHANNEL, mention=True)
    assert await slack.event(event_envelope(root)) == 200
    await slack.answers(CHANNEL, root["ts"])
    await slack.adapter.settle()
    mention = fake.user_says(f"<@{BOT_USER_ID}> once please", user=ADA, channel=CHANNEL, thread_ts=root["ts"],
                             mention=True)
    as_message = {**mention, "type": "message", "channel_type": "channel"}
    for event in (as_message, mention, as_message):
        assert await slack.event(event_envelope(event)) == 200
    await slack.adapter.settle()
    assert len(fake.in_thread(CHANNEL, root["ts"])) == 2
    assert fake_openai.count("POST", "/v1/responses") == 2


async def test_redaction_covers_the_thread_a_turn_brings_along(start_slack: StartSlack,
                                                              fake_openai: FakeOpenAI) -> None:
    slack = await start_slack(redact_patterns="email")
    root = slack.fake.user_says("write to ops-lead@corp.example about it", user=ADA, channel=CHANNEL)["ts"]
    mention = slack.fake.user_says(f"<@{BOT_USER_ID}> who do I write to?", user=BRAM, channel=CHANNEL,
                                   thread_ts=root, mention=True)
    assert await slack.event(event_envelope(mention)) == 200
    await slack.answers(CHANNEL, root)
    await slack.adapter.settle()
    [sent] = inputs(fake_openai)
    assert "ops-lead@corp.example" not in sent and "write to" in sent


async def test_under_user_scope_each_thread_brings_its_own_earlier_messages(start_slack: StartSlack,
                                                                           fake_openai: FakeOpenAI) -> None:
    slack = await start_slack(thread_scope="user")
    fake = slack.fake
    people(fake)
    older = fake.user_says("first thread: the VPN is down", user=BRAM, channel=CHANNEL)["ts"]
    newer = fake.user_says("second thread: lunch at 1?", user=CHIDI, channel=CHANNEL)["ts"]
    for root in (newer, older):  # the newer thread first: its mark must not hide the older thread's messages
        mention = fake.user_says(f"<@{BOT_USER_ID}> thoughts?", user=ADA, channel=CHANNEL, thread_ts=root,
                                 mention=True)
        assert await slack.event(event_envelope(mention)) == 200
        await slack.answers(CHANNEL, root)
        await slack.adapter.settle()
    first, second = inputs(fake_openai)
    assert "lunch at 1?" in first and "the VPN is down" in second
    assert first.endswith("thoughts?") and not first.endswith("Ada: thoughts?"), "one person's conversation"
    assert len(fake_openai.active_conversations) == 1, "one conversation per person and channel"


async def test_follow_ups_can_be_turned_off(start_slack: StartSlack, fake_openai: FakeOpenAI) -> None:
    slack = await start_slack(slack_follow_ups="off")
    root = slack.fake.user_says(f"<@{BOT_USER_ID}> hi", user=ADA, channel=CHANNEL, mention=True)
    assert await slack.event(event_envelope(root)) == 200
    await slack.answers(CHANNEL, root["ts"])
    follow_up = slack.fake.user_says("and then?", user=ADA, channel=CHANNEL, thread_ts=root["ts"])
    assert await slack.event(event_envelope(follow_up)) == 200
    await slack.adapter.settle()
    assert fake_openai.count("POST", "/v1/responses") == 1


async def test_a_rate_limited_thread_read_answers_with_what_was_read_and_warns(
    slack: Slack, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake = slack.fake
    people(fake)
    root = await a_thread_with_five_messages(slack)
    mention = fake.user_says(f"<@{BOT_USER_ID}> summary?", user=ADA, channel=CHANNEL, thread_ts=root, mention=True)
    fake.rate_limit("conversations.replies", per_second=0.001, burst=1)  # one read, then Retry-After for long
    assert await slack.event(event_envelope(mention)) == 200
    await slack.answers(CHANNEL, root)
    await slack.adapter.settle()
    assert "Bram wrote:\n> tried: same error" in inputs(fake_openai)[-1]

    fake.user_says(f"<@{ADA}> one more data point: 40 s", user=CHIDI, channel=CHANNEL, thread_ts=root)
    follow_up = fake.user_says("so?", user=BRAM, channel=CHANNEL, thread_ts=root)
    with caplog.at_level(logging.WARNING, logger="threadkeeper.slack"):
        assert await slack.event(event_envelope(follow_up)) == 200
        _, answer = await slack.answers(CHANNEL, root, count=2)
        await slack.adapter.settle()
    assert answer.text.startswith("echo: "), "answered all the same"
    assert inputs(fake_openai)[-1] == "Bram: so?", "with the context at hand (nothing new was read)"
    assert any(c.method == "conversations.replies" and c.refused for c in fake.calls)
    assert any("could not read the Slack thread" in r.getMessage() and "rate-limited" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)


async def test_two_people_share_one_conversation_and_forget_all_erases_only_one(
    slack: Slack, fake_openai: FakeOpenAI
) -> None:
    fake = slack.fake
    root = await ada_opens(slack, "my card ends 4242, is that the one on file?")
    await bram_follows(slack, root, "mine is the one ending 1881")

    [conversation] = fake_openai.active_conversations.values()
    said = [str(item.get("content")) for item in conversation.items if item.get("role") == "user"]
    assert len(said) == 2 and "Ada: my card ends 4242" in said[0] and "Bram: mine is the one ending 1881" in said[1]

    await forget(slack, "all", "all")
    assert fake.responses[0][1]["text"] == "Done: I forgot all your conversations in this workspace (1)."
    texts = [str(item.get("content")) for item in conversation.items]
    assert not [t for t in texts if "4242" in t], "Ada's turn and the answer repeating it are gone"
    assert [t for t in texts if "1881" in t], "Bram's remain"
    assert not conversation.deleted
    rt = slack.runtime
    key = ThreadKey("slack", TEAM_ID, f"{CHANNEL}/{root['ts']}", "*")
    kept = [t["text"] for t in await rt.store.turns(key)]
    assert kept and not [t for t in kept if "4242" in t] and [t for t in kept if "1881" in t]
    assert await leftovers(rt, [ADA, "4242", hash_user("slack", ADA)]) == []
    assert await leftovers(rt, [BRAM]) == [] and await leftovers(rt, [hash_user("slack", BRAM)]) != []

    # The bot still answers Bram in the same conversation.
    await bram_follows(slack, root, "and now?", count=3)
    assert len(fake_openai.active_conversations) == 1


async def test_a_shared_conversation_re_created_from_kept_turns_is_erased_whole(
    slack: Slack, fake_openai: FakeOpenAI
) -> None:
    root = await ada_opens(slack, "note: gate code 7311")
    await slack.adapter.settle()
    [lost] = fake_openai.active_conversations
    fake_openai.delete_conversation(lost)  # gone on the provider: the next turn re-primes a new one
    await bram_follows(slack, root, "got it")
    [conversation] = fake_openai.active_conversations.values()
    assert [i for i in conversation.items if "7311" in str(i.get("content"))], "Ada's turn, copied in as a seed"

    await forget(slack, "all", "all")
    assert fake_openai.active_conversations == {}, "copies nobody can attribute: the conversation goes whole"
    assert await leftovers(slack.runtime, [ADA, "7311"]) == []


async def test_on_the_chat_backend_forget_all_erases_one_speakers_turns_from_the_history(
    start_slack: StartSlack, fake_openai: FakeOpenAI
) -> None:
    slack = await start_slack(assistant_backend="chat")
    root = await ada_opens(slack, "my locker is 5512")
    await bram_follows(slack, root, "mine is 9001")
    await forget(slack, "all", "all")
    assert await leftovers(slack.runtime, [ADA, "5512"]) == [], "her turn and the answer repeating it, gone"
    assert await leftovers(slack.runtime, ["9001"]) != [], "his remain"


async def test_the_admin_cli_erases_a_speaker_the_same_way(slack: Slack, fake_openai: FakeOpenAI) -> None:
    root = await ada_opens(slack, "secret plan alpha")
    await bram_follows(slack, root, "plan beta from me")
    out = io.StringIO()
    assert await admin.main(slack.runtime, ["forget-user", "slack", ADA], out=out, err=io.StringIO()) == 0
    assert "Erased 1 threads" in out.getvalue()
    [conversation] = fake_openai.active_conversations.values()
    texts = [str(item.get("content")) for item in conversation.items]
    assert not [t for t in texts if "alpha" in t] and [t for t in texts if "beta" in t]


async def test_forget_in_a_channel_resets_its_shared_threads_and_says_so_there(
    slack: Slack, fake_openai: FakeOpenAI
) -> None:
    fake = slack.fake
    root = await ada_opens(slack, "hello")
    await slack.adapter.settle()
    await forget(slack, "", "here")
    assert fake.responses[0][1]["text"].startswith("Done: I forgot our conversation here.")
    assert fake_openai.active_conversations == {}
    _, note = await slack.answers(CHANNEL, root["ts"], count=2)
    assert note.text == "Ada reset this conversation: my next answer here starts fresh."

    await bram_follows(slack, root, "still there?", count=3)
    assert len(fake_openai.active_conversations) == 1, "the thread is still followed; a new conversation starts"


def test_which_channel_messages_are_follow_up_candidates() -> None:
    from adapters.slack.parse import Parsed, parse_event
    from tests.fakes.slack_server import mention_event

    fake = FakeSlack()
    root = fake.user_says("top", user=ADA, channel=CHANNEL)["ts"]

    def parsed(event: dict[str, object], **options: bool) -> Parsed | None:
        return parse_event(event_envelope(event), BOT_USER_ID, "shared", **options)

    follow_up = parsed(fake.user_says("more", user=BRAM, channel=CHANNEL, thread_ts=root))
    assert follow_up is not None and follow_up.follow_up and not follow_up.incoming.direct
    incoming = follow_up.incoming
    assert incoming.key == ThreadKey("slack", TEAM_ID, f"{CHANNEL}/{root}", "*") and incoming.author == BRAM
    assert incoming.place == f"slack:{TEAM_ID}:{CHANNEL}/{root}"
    for ignored in (fake.user_says("top level, no mention", channel=CHANNEL),
                    fake.user_says(f"<@{CHIDI}> for you", channel=CHANNEL, thread_ts=root),
                    fake.user_says("<!subteam^S1|oncall> for you", channel=CHANNEL, thread_ts=root),
                    fake.user_says(f"<@{BOT_USER_ID}> its app_mention answers it", channel=CHANNEL, thread_ts=root)):
        assert parsed(ignored) is None
    assert parsed(fake.user_says("off", channel=CHANNEL, thread_ts=root), follow_ups=False) is None
    mention = mention_event(f"<@{BOT_USER_ID}> hi <@{CHIDI}>", channel=CHANNEL, thread_ts=root)
    as_mention = parsed(mention)
    assert as_mention is not None and as_mention.incoming.direct
    assert as_mention.incoming.message_id == f"{CHANNEL}:{mention['ts']}"
