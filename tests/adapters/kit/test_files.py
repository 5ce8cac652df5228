"""The shared file download of every adapter (:mod:`adapters.kit.files`): types from bytes, the cap while
reading, the token's hosts across redirects, and one sentence per file that could not be read.

Loopback servers only: the fake Slack's file host, a foreign host (another port, so another origin), and
small aiohttp apps for bodies that never end or never come.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from yarl import URL

from adapters.kit.files import (
    MAX_TEXT_CHARS,
    SUPPORTED,
    FileFetcher,
    FileRef,
    Hosts,
    as_text,
    display_name,
    origin,
    size_text,
    sniff,
)
from tests.fakes.file_hosts import ForeignHost
from tests.fakes.sample_files import jpeg, pdf, png
from tests.fakes.slack_server import FakeSlack

TOKEN = "xoxb-test"


def fetcher_for(base: str, *, max_bytes: int = 1024 * 1024, max_files: int = 5, timeout: float = 10.0,
                token: bool = True) -> FileFetcher:
    found = origin(URL(base))
    assert found is not None
    hosts = Hosts(frozenset({found}), frozenset({found}) if token else frozenset())
    return FileFetcher(hosts, token=TOKEN if token else None, max_bytes=max_bytes, max_files=max_files,
                       timeout=timeout, platform="Slack")


@asynccontextmanager
async def serving(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/{name}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


# ---- what a file is ------------------------------------------------------------------------------
@pytest.mark.parametrize(("data", "kind"), [
    (png(), ("image", "image/png")),
    (jpeg(), ("image", "image/jpeg")),
    (b"GIF89a" + b"\0" * 20, ("image", "image/gif")),
    (b"RIFF\x10\0\0\0WEBPVP8 " + b"\0" * 20, ("image", "image/webp")),
    (pdf("hello"), ("pdf", "application/pdf")),
    (b"name,qty\nsoap,3\n", ("text", "text/plain")),
    ("\ufeffä ö ü — ✓\n".encode(), ("text", "text/plain")),
    (b"", ("text", "text/plain")),
])
def test_the_type_comes_from_the_bytes(data: bytes, kind: tuple[str, str]) -> None:
    assert sniff(data) == kind


@pytest.mark.parametrize("data", [
    b"PK\x03\x04" + b"\0" * 40,  # a zip, whatever its name says
    "caf\u00e9".encode("latin-1"),  # not UTF-8
    b"text with a NUL\0 inside",
    bytes(range(1, 32)) * 20,  # control characters throughout
])
def test_anything_else_is_not_read(data: bytes) -> None:
    assert sniff(data) is None


def test_names_and_sizes_read_well_in_a_sentence() -> None:
    assert display_name("my_notes (v2).txt") == "my_notes (v2).txt"
    assert display_name("evil\n<!channel>`x`.png") == "evil !channel x .png"
    assert display_name("") == "a file"
    assert len(display_name("a" * 300)) == 100
    assert size_text(20 * 1024 * 1024) == "20 MB" and size_text(1500) == "1 KB"
    assert as_text("\ufeffhi".encode()) == "hi"


# ---- fetching from the platform's host -------------------------------------------------------------
async def test_files_are_typed_and_text_is_cut_with_a_note() -> None:
    async with FakeSlack() as fake:
        big = ("line of a long log\n" * (MAX_TEXT_CHARS // 10)).encode()
        refs = [FileRef(f["name"], f["url_private_download"], f["size"]) for f in (
            fake.files.host("cat.png", png()), fake.files.host("notes.md", b"# Title\nbody\n"),
            fake.files.host("big.log", big), fake.files.host("tool.exe", b"MZ\x90\0" + b"\0" * 64))]
        fetched = await fetcher_for(fake.base).fetch(refs)
    image, notes, log = fetched.attachments
    assert (image.kind, image.mime, image.data) == ("image", "image/png", png())
    assert (notes.kind, notes.name, notes.text) == ("text", "notes.md", "# Title\nbody")
    assert log.kind == "text" and len(log.text) < MAX_TEXT_CHARS + 100
    assert log.text.endswith("more characters are not shown]")
    assert fetched.notices == (f"I can't read tool.exe: {SUPPORTED}.",)


async def test_the_token_goes_to_slack_after_its_redirect_and_never_to_another_host() -> None:
    async with FakeSlack() as fake, ForeignHost() as foreign:
        slack_file = fake.files.host("a.txt", b"from slack")
        elsewhere = fake.files.host("b.txt", b"", redirect=foreign.host("b.txt", b"from a foreign host"))
        refs = [FileRef(f["name"], f["url_private_download"]) for f in (slack_file, elsewhere)]
        fetched = await fetcher_for(fake.base).fetch(refs)
    assert [a.text for a in fetched.attachments] == ["from slack", "from a foreign host"]
    first, second = fake.files.requests_for(slack_file["id"])
    assert "/download/" in first.path and "/files-tmb/" in second.path
    assert first.authorization == second.authorization == f"Bearer {TOKEN}" and fake.files.refused == 0
    [seen] = foreign.seen
    assert seen.authorization is None and "Authorization" not in seen.headers


async def test_a_url_on_another_host_is_never_fetched() -> None:
    async with FakeSlack() as fake, ForeignHost() as foreign:
        url = foreign.host("x.png", png())
        fetched = await fetcher_for(fake.base).fetch([FileRef("x.png", url), FileRef("y.png", "file:///etc/passwd"),
                                                       FileRef("z.png", "")])
    assert foreign.seen == [] and fetched.attachments == ()
    assert fetched.notices == ("I can only read files shared on Slack, so I skipped x.png.",
                               "I can only read files shared on Slack, so I skipped y.png.",
                               "I couldn't download z.png.")


async def test_the_cap_holds_while_reading_whatever_the_size_claims() -> None:
    """An endless body: only the reader's cap ends the download, and the server sees the connection go."""
    stopped = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            while True:
                await response.write(b"x" * 65536)
        except (ConnectionError, RuntimeError):
            stopped.set()
        return response

    async with serving(endless) as base:
        fetched = await fetcher_for(base, max_bytes=2 * 1024 * 1024).fetch([FileRef("log.txt", f"{base}/log.txt",
                                                                                     size=1024)])
        await asyncio.wait_for(stopped.wait(), 10)
    assert fetched.attachments == ()
    assert fetched.notices == ("I couldn't read log.txt: it is larger than the 2 MB limit.",)


async def test_a_size_over_the_cap_is_refused_before_any_request() -> None:
    async with FakeSlack() as fake:
        claimed = fake.files.host("huge.bin", b"small really", size=50 * 1024 * 1024)
        told = fake.files.host("told.bin", b"x" * 4096, redirect=None)
        fetched = await fetcher_for(fake.base, max_bytes=1024).fetch(
            [FileRef("huge.bin", claimed["url_private_download"], claimed["size"]),
             FileRef("told.bin", told["url_private_download"])])
    assert fake.files.requests_for(claimed["id"]) == []
    assert fetched.notices == ("I couldn't read huge.bin: it is larger than the 1 KB limit.",
                               "I couldn't read told.bin: it is larger than the 1 KB limit.")


async def test_failures_are_one_sentence_each_and_the_rest_is_read() -> None:
    hang = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "loop.txt":
            raise web.HTTPFound("/loop.txt")
        if name == "slow.txt":
            await hang.wait()
        return web.Response(text="fine")

    async with FakeSlack() as fake, serving(handler) as base:
        gone = fake.files.host("gone.txt", b"", status=404)
        fake.files.token = "xoxb-another"
        wrong = fake.files.host("wrong-token.txt", b"secret")
        names = ["loop.txt", "slow.txt", "ok.txt"]
        refs = [FileRef(n, f"{base}/{n}") for n in names]
        fetched = await fetcher_for(base, timeout=0.5).fetch(refs)
        slack = await fetcher_for(fake.base).fetch([FileRef("gone.txt", gone["url_private_download"]),
                                                    FileRef("wrong-token.txt", wrong["url_private_download"])])
        hang.set()
    assert [a.text for a in fetched.attachments] == ["fine"]
    assert fetched.notices == ("I couldn't download loop.txt.", "I couldn't download slow.txt.")
    assert slack.notices == ("I couldn't download gone.txt.", "I couldn't download wrong-token.txt.")


async def test_too_many_files_the_rest_are_named() -> None:
    async with FakeSlack() as fake:
        files = [fake.files.host(f"f{n}.txt", f"file {n}".encode()) for n in range(1, 8)]
        refs = [FileRef(f["name"], f["url_private_download"]) for f in files]
        fetched = await fetcher_for(fake.base, max_files=5).fetch(refs)
        nothing = await fetcher_for(fake.base, max_files=0).fetch(refs[:1])
    assert [a.text for a in fetched.attachments] == [f"file {n}" for n in range(1, 6)]
    assert fetched.notices == ("I read only the first 5 files of a message, so I skipped f6.txt, f7.txt.",)
    assert nothing.notices == ("I read no files of a message, so I skipped f1.txt.",)
    assert len(fake.files.seen) == 10, "five files, each a download and its redirect; none of the others"
