"""Files shared on Slack, end to end: signed events into the real Bolt app, downloads from the fake Slack's
private file URLs with the bot token, the answer from the loopback fake OpenAI.

The fake Slack serves a file only with the right Bearer token and, like Slack, redirects the download
once to a second Slack path that wants it too; a second loopback server stands for any other host and
must never see the token.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.assistants.files import NO_IMAGES
from bot.assistants.uploads import INLINE_LIMIT
from tests.fakes.file_hosts import ForeignHost
from tests.fakes.openai_files import file_parts, image_parts, turns, user_text
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.sample_files import pdf, png
from tests.fakes.slack_server import (
    BOT_USER_ID,
    FakeSlack,
    Message,
    command_form,
    dm_event,
    event_envelope,
    mention_event,
)
from tests.support.slack import Slack, StartSlack

JSON = dict[str, Any]
TOKEN = "xoxb-test"


async def dm(slack: Slack, text: str, *files: JSON, channel: str = "D1") -> Message:
    """A ``file_share`` DM carrying ``files``; returns the bot's one reply once everything is done."""
    event = dm_event(text, channel=channel, files=list(files), subtype="file_share")
    assert await slack.event(event_envelope(event)) == 200
    await slack.adapter.settle()
    [answer] = slack.fake.in_thread(channel, None)
    return answer


@pytest.fixture(params=["conversations", "chat"])
async def any_backend(request: pytest.FixtureRequest, start_slack: StartSlack) -> Slack:
    return await start_slack(assistant_backend=request.param)


async def test_an_image_in_a_dm_reaches_the_model_as_image_input(any_backend: Slack,
                                                                 fake_openai: FakeOpenAI) -> None:
    shared = any_backend.fake.files.host("cat.png", png(), mimetype="image/png")
    answer = await dm(any_backend, "what is in this picture?", shared)
    assert answer.text == "echo: what is in this picture?"
    [body] = turns(fake_openai)
    [part] = image_parts(body)
    assert str(part.get("image_url") or part).find("data:image/png;base64,") >= 0
    first, second = any_backend.fake.files.requests_for(shared["id"])
    assert first.authorization == second.authorization == f"Bearer {TOKEN}", "the token again after the redirect"
    assert "/files-tmb/" in second.path and any_backend.fake.files.refused == 0


async def test_a_file_shared_without_text_is_answered(slack: Slack, fake_openai: FakeOpenAI) -> None:
    answer = await dm(slack, "", slack.fake.files.host("IMG_0001.jpg", png(), mimetype="image/jpeg"))
    assert answer.text.startswith("echo:")
    assert len(image_parts(turns(fake_openai)[0])) == 1


async def test_a_text_file_reaches_the_model_with_its_name(slack: Slack, fake_openai: FakeOpenAI) -> None:
    shared = slack.fake.files.host("sales.csv", b"name,qty\nsoap,3\n", mimetype="image/png")  # the type lies
    event = mention_event(f"<@{BOT_USER_ID}> total?", channel="C7")
    event["files"] = [shared]
    assert await slack.event(event_envelope(event)) == 200
    [answer] = await slack.answers("C7", event["ts"])
    await slack.adapter.settle()
    sent = user_text(turns(fake_openai)[0])
    # THREAD_SCOPE's default is now "shared" (issue 15): a channel thread's turns carry their speaker's name.
    name = slack.fake.name_of("U1USER")
    assert sent.startswith(f"{name}: total?\n\nA file shared with this message")
    assert "[file: sales.csv]\n> name,qty\n> soap,3" in sent and answer.text.startswith(f"echo: {name}: total?")


@pytest.mark.parametrize("backend", ["conversations", "chat"])
async def test_a_pdf_reaches_the_model_as_a_file_or_its_text(start_slack: StartSlack, fake_openai: FakeOpenAI,
                                                             backend: str) -> None:
    slack = await start_slack(assistant_backend=backend)
    await dm(slack, "when is the launch?", slack.fake.files.host("plan.pdf", pdf("The launch is on Tuesday")))
    [body] = turns(fake_openai)
    if backend == "conversations":
        [part] = file_parts(body)
        assert part["filename"] == "plan.pdf" and part["file_data"].startswith("data:application/pdf;base64,")
    else:
        assert "[file: plan.pdf]\n> The launch is on Tuesday" in user_text(body)


async def test_a_file_larger_than_it_claims_is_cut_off_at_the_cap(slack: Slack, fake_openai: FakeOpenAI) -> None:
    huge = slack.fake.files.host("huge.png", png(pad=25 * 1024 * 1024), size=1024, chunked=True)
    answer = await dm(slack, "is this ok?", huge)
    assert answer.text == "I couldn't read huge.png: it is larger than the 20 MB limit.\n\necho: is this ok?"
    assert image_parts(turns(fake_openai)[0]) == []
    assert slack.fake.files.hosted[huge["id"]].requests == 1


async def test_six_files_the_sixth_is_refused_by_name(slack: Slack, fake_openai: FakeOpenAI) -> None:
    files = [slack.fake.files.host(f"part{n}.txt", f"part {n}".encode()) for n in range(1, 7)]
    answer = await dm(slack, "merge these", *files)
    assert answer.text.startswith("I read only the first 5 files of a message, so I skipped part6.txt.\n\n")
    sent = user_text(turns(fake_openai)[0])
    assert all(f"[file: part{n}.txt]" in sent for n in range(1, 6)) and "part6" not in sent
    assert slack.fake.files.requests_for(files[5]["id"]) == []


async def test_a_file_that_404s_is_one_sentence_and_the_text_is_answered(slack: Slack) -> None:
    answer = await dm(slack, "and this?", slack.fake.files.host("gone.txt", b"", status=404))
    assert answer.text == "I couldn't download gone.txt.\n\necho: and this?"


async def test_an_unsupported_file_is_named_and_alone_it_gets_the_sentence(slack: Slack,
                                                                          fake_openai: FakeOpenAI) -> None:
    archive = slack.fake.files.host("logs.zip", b"PK\x03\x04" + b"\0" * 100, mimetype="application/zip")
    answer = await dm(slack, "see attached", archive, channel="D2")
    assert answer.text == ("I can't read logs.zip: I can read images (PNG, JPEG, GIF, WebP), PDFs and text "
                           "files.\n\necho: see attached")
    alone = await dm(slack, "", slack.fake.files.host("logs.zip", b"PK\x03\x04" + b"\0" * 100), channel="D3")
    assert alone.text.startswith("I can't read logs.zip:") and "echo" not in alone.text
    assert len(turns(fake_openai)) == 1


async def test_the_token_is_never_sent_to_a_foreign_host(slack: Slack, fake_openai: FakeOpenAI) -> None:
    async with ForeignHost() as foreign:
        moved = slack.fake.files.host("moved.txt", b"", redirect=foreign.host("moved.txt", b"served elsewhere"))
        answer = await dm(slack, "read it", moved)
        [seen] = foreign.seen
        assert seen.authorization is None and "Authorization" not in seen.headers
        assert slack.fake.files.requests_for(moved["id"])[0].authorization == f"Bearer {TOKEN}"
        assert "[file: moved.txt]\n> served elsewhere" in user_text(turns(fake_openai)[0])
        assert answer.text.startswith("echo: read it")

        # A file object pointing elsewhere (and a link in the text) is never fetched at all.
        url = foreign.host("x.png", png())
        crafted = {**slack.fake.files.host("x.png", png()), "url_private_download": url, "url_private": url}
        answer = await dm(slack, f"look at {url}", crafted, channel="D9")
        assert len(foreign.seen) == 1
        assert answer.text.startswith("I can only read files shared on Slack, so I skipped x.png.\n\n")


async def test_refused_images_are_said_and_the_text_answered(slack: Slack, fake_openai: FakeOpenAI) -> None:
    fake_openai.refuse_images = True
    answer = await dm(slack, "what is this?", slack.fake.files.host("cat.png", png()))
    assert answer.text.startswith(f"{NO_IMAGES}\n\necho: what is this?")


async def test_forget_deletes_the_uploads(slack: Slack, fake_openai: FakeOpenAI, fake_slack: FakeSlack) -> None:
    await dm(slack, "read this scan", slack.fake.files.host("scan.png", png(pad=INLINE_LIMIT + 1)), channel="D5")
    assert len(fake_openai.stored) == 1 and image_parts(turns(fake_openai)[0])[0].get("file_id")
    status, _ = await slack.command(command_form("/forget", "", channel="D5",
                                                 response_url=fake_slack.response_url("forget")))
    assert status == 200
    await slack.adapter.settle()
    assert fake_openai.stored == {} and len(fake_openai.deleted) == 1
    assert all(c.deleted for c in fake_openai.conversations.values())
