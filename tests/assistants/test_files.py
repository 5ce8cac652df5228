"""Files reach the model, on both backends, through the core and the real openai client to the loopback fake.

Images as image input, PDFs as ``input_file`` (Conversations) or their text (chat), text files inlined and
cut to the context; a server that refuses images answers the text with one sentence first, and remembers;
uploads go with the thread; kept turns hold placeholders, never bytes.
"""

from __future__ import annotations

import base64
import itertools

import pytest

from bot.assistants.files import BAD_IMAGE, NO_IMAGES
from bot.assistants.uploads import INLINE_LIMIT
from bot.domain import Attachment, Incoming, ThreadKey
from bot.runtime import Runtime
from tests.fakes.openai_files import file_parts, image_parts, turns, user_text
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.sample_files import pdf, png
from tests.support.fixtures import MakeRuntime

KEY = ThreadKey("slack", "T1", "D1", "U1")
_ids = itertools.count(1)


def image(name: str = "cat.png", data: bytes | None = None) -> Attachment:
    return Attachment(name, "image", "image/png", data=data if data is not None else png())


def text_file(name: str, text: str) -> Attachment:
    return Attachment(name, "text", "text/plain", text=text)


def pdf_file(name: str = "plan.pdf", text: str = "The launch is on Tuesday") -> Attachment:
    return Attachment(name, "pdf", "application/pdf", data=pdf(text))


async def ask(runtime: Runtime, text: str, *files: Attachment, key: ThreadKey = KEY) -> str:
    answer = await runtime.core.handle(Incoming(key, text, f"m{next(_ids)}", attachments=files))
    assert answer is not None
    return answer.text


@pytest.fixture(params=["conversations", "chat"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_an_image_reaches_the_model_as_image_input(make_runtime: MakeRuntime, fake_openai: FakeOpenAI,
                                                        backend: str) -> None:
    runtime = await make_runtime(assistant_backend=backend)
    assert await ask(runtime, "what is in this picture?", image()) == "echo: what is in this picture?"
    [body] = turns(fake_openai)
    [part] = image_parts(body)
    expected = "data:image/png;base64," + base64.b64encode(png()).decode()
    if backend == "conversations":
        assert part == {"type": "input_image", "detail": "auto", "image_url": expected}
        assert body["input"][0]["content"][0] == {"type": "input_text", "text": "what is in this picture?"}
    else:
        assert part == {"type": "image_url", "image_url": {"url": expected}}
    kept = await runtime.store.turns(KEY)
    assert kept[0] == {"role": "user", "text": "what is in this picture? [image: cat.png]"}
    if backend == "chat":
        record = await runtime.store.get_thread(KEY)
        assert record is not None
        history = await runtime.store.chat.read(record.thread_id)
        assert history is not None and "base64" not in str(history)


async def test_an_image_alone_is_answered(make_runtime: MakeRuntime, fake_openai: FakeOpenAI, backend: str) -> None:
    runtime = await make_runtime(assistant_backend=backend)
    assert await ask(runtime, "", image()) == "echo: "
    [body] = turns(fake_openai)
    assert len(image_parts(body)) == 1 and user_text(body) == ""


async def test_a_pdf_goes_as_a_file_or_as_its_text(make_runtime: MakeRuntime, fake_openai: FakeOpenAI,
                                                  backend: str) -> None:
    runtime = await make_runtime(assistant_backend=backend)
    await ask(runtime, "when is the launch?", pdf_file())
    [body] = turns(fake_openai)
    if backend == "conversations":
        [part] = file_parts(body)
        assert part["filename"] == "plan.pdf"
        assert part["file_data"] == "data:application/pdf;base64," + base64.b64encode(pdf_file().data).decode()
        assert "Tuesday" not in user_text(body)
    else:
        assert file_parts(body) == []
        assert "[file: plan.pdf]\n> The launch is on Tuesday" in user_text(body)


async def test_a_server_that_refuses_pdfs_gets_their_text(make_runtime: MakeRuntime,
                                                          fake_openai: FakeOpenAI) -> None:
    fake_openai.refuse_files = True
    runtime = await make_runtime()
    answer = await ask(runtime, "when?", pdf_file())
    assert "The launch is on Tuesday" in answer and not answer.startswith(NO_IMAGES)
    await ask(runtime, "and now?", pdf_file())
    assert fake_openai.media_refused == 1, "remembered: the second PDF went as text at once"


async def test_refused_images_one_sentence_the_text_answered_and_remembered(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, backend: str
) -> None:
    fake_openai.refuse_images = True
    runtime = await make_runtime(assistant_backend=backend)
    answer = await ask(runtime, "what is this?", image())
    assert answer == f"{NO_IMAGES}\n\necho: what is this?\n[image not shown: cat.png]"
    assert fake_openai.media_refused == 1
    again = await ask(runtime, "and this one?", image("dog.png"))
    assert again.startswith(NO_IMAGES + "\n\necho: and this one?")
    assert fake_openai.media_refused == 1, "the refusal is remembered for the server and model"
    assert [len(image_parts(b)) for b in turns(fake_openai)] == [1, 0, 0]


async def test_vision_on_keeps_trying_and_off_never_sends(make_runtime: MakeRuntime,
                                                          fake_openai: FakeOpenAI) -> None:
    fake_openai.refuse_images = True
    on = await make_runtime(assistant_vision="on")
    for _ in range(2):
        assert (await ask(on, "look", image())).startswith(NO_IMAGES)
    assert fake_openai.media_refused == 2, "on: a refusal is not remembered"
    fake_openai.refuse_images = False
    off = await make_runtime(assistant_vision="off")
    assert await ask(off, "look", image(), key=ThreadKey("slack", "T1", "D2", "U1")) == \
        f"{NO_IMAGES}\n\necho: look\n[image not shown: cat.png]"
    assert await ask(off, "no image here", key=ThreadKey("slack", "T1", "D2", "U1")) == "echo: no image here"


async def test_an_image_refused_for_another_reason_is_not_remembered(make_runtime: MakeRuntime,
                                                                     fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(400, message="Invalid image: the data could not be decoded.", path_prefix="/v1/responses")
    runtime = await make_runtime()
    assert (await ask(runtime, "look", image())).startswith(BAD_IMAGE + "\n\necho: look")
    await ask(runtime, "again", image())
    assert [len(image_parts(b)) for b in turns(fake_openai)][-1] == 1


async def test_the_sentence_streams_before_the_answer(make_runtime: MakeRuntime, fake_openai: FakeOpenAI,
                                                      backend: str) -> None:
    fake_openai.refuse_images = True
    runtime = await make_runtime(assistant_backend=backend)
    deltas: list[str] = []

    async def on_delta(delta: str) -> None:
        deltas.append(delta)

    answer = await runtime.core.handle(Incoming(KEY, "hi", "m-stream", attachments=(image(),)), on_delta)
    assert answer is not None and "".join(deltas) == answer.text
    assert deltas[0].startswith(NO_IMAGES + "\n\n")


async def test_large_files_are_uploaded_and_deleted_with_the_thread(make_runtime: MakeRuntime,
                                                                    fake_openai: FakeOpenAI) -> None:
    runtime = await make_runtime()
    big = image("scan.png", png(pad=INLINE_LIMIT + 1000))
    await ask(runtime, "read this", big, pdf_file())
    [body] = turns(fake_openai)
    [stored] = fake_openai.stored.values()
    assert image_parts(body) == [{"type": "input_image", "detail": "auto", "file_id": stored.id}]
    assert "file_data" in file_parts(body)[0], "a small PDF still goes inline"
    assert stored.filename == "scan.png" and stored.purpose == "user_data" and stored.data == big.data
    await ask(runtime, "and a follow-up")
    result = await runtime.core.forget(KEY)
    assert result.threads == 1 and result.remote_pending == 0
    assert fake_openai.stored == {} and fake_openai.deleted == [stored.id]
    assert fake_openai.orphan_items == set()


async def test_a_refused_request_leaves_no_upload(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    fake_openai.refuse_images = True
    runtime = await make_runtime()
    answer = await ask(runtime, "read this", image("scan.png", png(pad=INLINE_LIMIT + 1000)))
    assert answer.startswith(NO_IMAGES)
    assert fake_openai.stored == {} and len(fake_openai.deleted) == 1


async def test_a_server_without_a_files_api_gets_everything_inline(make_runtime: MakeRuntime,
                                                                   fake_openai: FakeOpenAI) -> None:
    fake_openai.files_api = False
    runtime = await make_runtime()
    for _ in range(2):
        await ask(runtime, "read this", image("scan.png", png(pad=INLINE_LIMIT + 10)))
    assert [image_parts(b)[0]["image_url"][:22] for b in turns(fake_openai)] == ["data:image/png;base64,"] * 2
    assert fake_openai.count("POST", "/v1/files") == 1, "no Files API: remembered"


async def test_text_files_are_inlined_and_cut_to_the_context(make_runtime: MakeRuntime, fake_openai: FakeOpenAI,
                                                             backend: str) -> None:
    runtime = await make_runtime(assistant_backend=backend, context_budget=2000)
    log = "\n".join(f"2026-01-01 12:00:{n % 60:02d} worker {n} finished its job without trouble" for n in range(3000))
    await ask(runtime, "what failed?", text_file("notes.md", "# Notes\nall good"), text_file("app.log", log))
    [body] = turns(fake_openai)
    sent = user_text(body)
    assert sent.startswith("what failed?\n\nA file shared with this message")
    assert "[file: notes.md]\n> # Notes\n> all good" in sent and "[file: app.log]" in sent
    assert "more characters are not shown]" in sent
    if backend == "chat":
        assert runtime.assistant.last_sent_tokens <= 1500  # type: ignore[attr-defined]
    kept = await runtime.store.turns(KEY)
    assert kept[0]["text"] == "what failed? [file: notes.md, 2 lines] [file: app.log, 3,000 lines]"
