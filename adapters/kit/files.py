"""Files users share: fetched from the platform's own hosts, streamed under a cap, typed from their bytes.

Every platform does the same with a message's files (:func:`deliver_with_files`): take at most
``MAX_FILES_PER_MESSAGE`` of them, download each one (:class:`FileFetcher`) and say, in one short sentence
per problem, what could not be read. The sentences open the answer (:class:`Noted`), and the rest of the
message is answered as usual.

Safety, whatever a message says:

* only URLs on the platform's file hosts are fetched (:class:`Hosts`), never one found in message text;
* the token goes only to the hosts the platform names for it, after each redirect too: redirects are
  followed by hand (at most :data:`MAX_REDIRECTS`), and a redirect to any other host is fetched without it;
* the download is streamed and stops at ``MAX_FILE_BYTES`` whatever size the platform or the server
  claims, and every file has :data:`FILE_TIMEOUT` seconds in all;
* the type comes from the bytes (:func:`sniff`): magic numbers for images and PDFs, valid UTF-8 without
  NULs for text, whatever the file's name or claimed type say.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp
from yarl import URL

from adapters.kit.reply import Reply, deliver
from bot.core import Core
from bot.domain import Attachment, Incoming
from bot.text import clean_input

log = logging.getLogger("threadkeeper.files")

FILE_TIMEOUT = 30.0
"""Seconds one file may take, redirects and all."""
MAX_REDIRECTS = 3
MAX_TEXT_CHARS = 100_000
"""A text file is cut here (with a note); the assistant cuts it further to its token budget."""
CHUNK = 64 * 1024
SUPPORTED = "I can read images (PNG, JPEG, GIF, WebP), PDFs and text files"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
"""Control characters that do not occur in text files (tab, newlines, form feed and escape do)."""
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f`<>|]+")


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file a message carries, as the platform describes it (nothing here is trusted but the URL's host)."""

    name: str
    url: str
    size: int | None = None
    """The size the platform claims; a larger one is refused at once, a smaller one caps nothing."""


@dataclass(frozen=True, slots=True)
class Fetched:
    attachments: tuple[Attachment, ...] = ()
    notices: tuple[str, ...] = ()
    """One short sentence per file that could not be read (too big, too many, failed, unsupported)."""


Origin = tuple[str, str, int]


def origin(url: URL) -> Origin | None:
    if url.scheme not in ("http", "https") or not url.host or url.port is None:
        return None
    return url.scheme, url.host.lower(), url.port


def origin_of_base(base: str | None) -> set[Origin]:
    """The origin of a configured base URL (``SLACK_API_URL``, ``DISCORD_API_BASE``), if set and sound."""
    found = origin(URL(base)) if base else None
    return {found} if found else set()


@dataclass(frozen=True, slots=True)
class Hosts:
    """Where a platform's files live, and which of those hosts get its token."""

    files: frozenset[Origin]
    """Origins a file's URL must have (scheme, host and port: a loopback fake on another port is foreign)."""
    token: frozenset[Origin] = frozenset()
    """Origins the ``Authorization`` header is sent to, on the first request and after every redirect."""

    @classmethod
    @functools.lru_cache(maxsize=16)
    def https(cls, names: tuple[str, ...], base: str | None, *, token: bool) -> Hosts:
        """The platform's file hosts over HTTPS, and the origin of its configured API base (``base``: a loopback
        fake's). Made once per platform and base: every answer asks for them."""
        files = frozenset({("https", n, 443) for n in names} | origin_of_base(base))
        return cls(files, files if token else frozenset())


def display_name(name: str) -> str:
    """A file name fit for a sentence and the model's text: one line, no markup, at most 100 characters."""
    cleaned = _UNSAFE_NAME.sub(" ", name).strip() or "a file"
    return cleaned if len(cleaned) <= 100 else cleaned[:99] + "…"


def size_text(size: int) -> str:
    mib = size / (1024 * 1024)
    return f"{mib:.0f} MB" if mib >= 1 else f"{max(1, size // 1024)} KB"


# ---- what a file is ------------------------------------------------------------------------------
def sniff(data: bytes) -> tuple[str, str] | None:
    """``(kind, mime)`` from the bytes alone, or None for anything the assistant cannot read."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image", "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image", "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image", "image/webp"
    if b"%PDF-" in data[:1024]:
        return "pdf", "application/pdf"
    if as_text(data) is not None:
        return "text", "text/plain"
    return None


def as_text(data: bytes) -> str | None:
    """The text of a text-like file: valid UTF-8 (a BOM is fine), no NULs, hardly any control characters."""
    if b"\x00" in data:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    sample = text[:65536]
    if sample and len(_CONTROL.findall(sample)) > len(sample) // 100:
        return None
    return text


def cut_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    if len(text) <= limit:
        return text
    keep = text.rfind("\n", 0, limit)
    keep = keep if keep > limit * 0.8 else limit
    return f"{text[:keep]}\n[… the file is cut here: {len(text) - keep:,} more characters are not shown]"


def attachment(name: str, data: bytes) -> Attachment | None:
    """The downloaded bytes as an :class:`Attachment`, or None when the type is not supported."""
    found = sniff(data)
    if found is None:
        return None
    kind, mime = found
    if kind == "text":
        # clean_input: the same characters go as from a message (bidi overrides, stray controls).
        return Attachment(name, "text", mime, text=clean_input(cut_text(as_text(data) or "")))
    return Attachment(name, "image" if kind == "image" else "pdf", mime, data=data)


# ---- fetching ------------------------------------------------------------------------------------
class FileProblem(Exception):
    """A file that could not be read; ``sentence`` says so to the user."""

    def __init__(self, sentence: str, detail: str) -> None:
        super().__init__(detail)
        self.sentence = sentence


class FileFetcher:
    """Downloads a message's files under the limits; a platform gives its hosts and token."""

    def __init__(self, hosts: Hosts, *, token: str | None = None, max_bytes: int, max_files: int,
                 timeout: float = FILE_TIMEOUT, platform: str = "the platform") -> None:
        self.hosts = hosts
        self.token = token
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.timeout = timeout
        self.platform = platform

    async def fetch(self, refs: Sequence[FileRef]) -> Fetched:
        """Every file that could be read, and one sentence for each that could not (in the files' order)."""
        taken, skipped = list(refs[: self.max_files]), refs[self.max_files :]
        notices: list[str] = []
        if skipped:
            names = ", ".join(display_name(r.name) for r in skipped)
            first = f"only the first {self.max_files} files" if self.max_files else "no files"
            notices.append(f"I read {first} of a message, so I skipped {names}.")
        if not taken:
            return Fetched((), tuple(notices))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
            results = await asyncio.gather(*(self._one(session, ref) for ref in taken))
        attachments = []
        for result in results:
            if isinstance(result, str):
                notices.append(result)
            else:
                attachments.append(result)
        return Fetched(tuple(attachments), tuple(notices))

    async def _one(self, session: aiohttp.ClientSession, ref: FileRef) -> Attachment | str:
        name = display_name(ref.name)
        try:
            async with asyncio.timeout(self.timeout):
                data = await self._download(session, ref, name)
            # Typing 20 MB (UTF-8 check, control characters) is CPU work: off the event loop when large.
            found = await asyncio.to_thread(attachment, name, data) if len(data) > CHUNK else attachment(name, data)
        except FileProblem as exc:
            log.info("file not read: %s", exc)
            return exc.sentence
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.info("file not read: %s (%s)", type(exc).__name__, exc)
            return f"I couldn't download {name}."
        if found is None:
            return f"I can't read {name}: {SUPPORTED}."
        return found

    def _too_big(self, name: str, detail: str) -> FileProblem:
        return FileProblem(f"I couldn't read {name}: it is larger than the {size_text(self.max_bytes)} limit.",
                           detail)

    async def _download(self, session: aiohttp.ClientSession, ref: FileRef, name: str) -> bytes:
        if not ref.url:
            raise FileProblem(f"I couldn't download {name}.", f"{self.platform} gave no URL for it")
        url = URL(ref.url)
        if origin(url) not in self.hosts.files:
            raise FileProblem(f"I can only read files shared on {self.platform}, so I skipped {name}.",
                              f"a file URL on a foreign host {url.host}")
        if ref.size is not None and ref.size > self.max_bytes:
            raise self._too_big(name, f"claimed size {ref.size}")
        for _ in range(MAX_REDIRECTS + 1):
            headers = {"Authorization": f"Bearer {self.token}"} if self.token and origin(url) in self.hosts.token \
                else {}
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status in _REDIRECTS and "Location" in resp.headers:
                    url = url.join(URL(resp.headers["Location"]))
                    if origin(url) is None:
                        raise FileProblem(f"I couldn't download {name}.", f"a redirect to {url.scheme}")
                    continue
                if resp.status != 200:
                    raise FileProblem(f"I couldn't download {name}.", f"HTTP {resp.status} from {url.host}")
                if (resp.content_length or 0) > self.max_bytes:
                    raise self._too_big(name, f"Content-Length {resp.content_length}")
                return await self._read(resp, name)
        raise FileProblem(f"I couldn't download {name}.", f"more than {MAX_REDIRECTS} redirects")

    async def _read(self, resp: aiohttp.ClientResponse, name: str) -> bytes:
        """The body, read in chunks; past ``max_bytes`` the connection is dropped, whatever was claimed."""
        data = bytearray()
        async for chunk in resp.content.iter_chunked(CHUNK):
            data += chunk
            if len(data) > self.max_bytes:
                resp.close()
                raise self._too_big(name, f"more than {self.max_bytes} bytes read")
        return bytes(data)


# ---- delivering an answer to a message with files ---------------------------------------------------
class Noted:
    """A :class:`Reply` whose answer opens with the sentences about the message's files."""

    def __init__(self, inner: Reply, notices: Sequence[str]) -> None:
        self.inner = inner
        self.prefix = "".join(f"{n}\n" for n in notices) + ("\n" if notices else "")
        self._said = False

    async def begin(self) -> None:
        """Already begun before the files were fetched (the user saw "working" meanwhile)."""

    async def on_delta(self, delta: str) -> None:
        if not self._said:
            self._said = True
            delta = self.prefix + delta
        await self.inner.on_delta(delta)

    async def on_status(self, status: str) -> None:
        await self.inner.on_status(status)

    async def finish(self, text: str) -> None:
        await self.inner.finish(self.prefix + text)

    async def fail(self, sentence: str) -> None:
        await self.inner.fail(self.prefix + sentence)

    async def discard(self) -> None:
        await self.inner.discard()

    async def close(self) -> None:
        await self.inner.close()


Fetch = Callable[[Sequence[FileRef]], Awaitable[Fetched]]


async def deliver_with_files(core: Core, incoming: Incoming, refs: Sequence[FileRef], fetch: Fetch, reply: Reply,
                             log: logging.Logger) -> None:
    """:func:`~adapters.kit.reply.deliver`, with the message's files fetched first (while the reply shows
    that the bot is working) and the sentences about them opening the answer.

    A message left with nothing to read (no text, and no file that could be read) gets the sentences
    alone, where the bot may answer at all.
    """
    if not refs:
        await deliver(core, incoming, reply, log)
        return
    try:
        await reply.begin()
        fetched = await fetch(refs)
    except BaseException:
        await reply.close()
        raise
    incoming = dataclasses.replace(incoming, attachments=incoming.attachments + fetched.attachments)
    if not clean_input(incoming.text) and not incoming.attachments:
        try:
            if fetched.notices and core.policy.allows(incoming):
                await reply.fail(" ".join(fetched.notices))
            else:
                await reply.discard()
        finally:
            await reply.close()
        return
    await deliver(core, incoming, Noted(reply, fetched.notices), log)
