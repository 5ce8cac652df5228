"""Files in a user's turn, as the backends send them, and what happens when a server will not take them.

The adapter has downloaded and typed each file (:class:`~bot.domain.Attachment`); here it becomes model
input:

* **images** (PNG, JPEG, GIF, WebP) go as image input: Responses ``input_image``, chat ``image_url`` parts,
  as data URLs (the Conversations backend uploads larger ones, :mod:`bot.assistants.uploads`);
* **PDFs** go as Responses ``input_file``; the chat backend (and a Responses server that refuses files)
  gets their text instead, extracted with pypdf off the event loop and inlined like a text file;
* **text files** are inlined in the turn's text (:func:`bot.assistants.render.file_block`), cut to a token
  budget here with a visible note (the adapter has already cut them by characters).

``ASSISTANT_VISION``: ``off`` never sends images; ``auto`` sends them until the server refuses image input,
and remembers the refusal for the server and model in the shared notes (:class:`ServerMemory`); ``on``
always sends them (a refusal is not remembered: the operator says this model sees). Whenever images are
not sent, one short sentence (:data:`NO_IMAGES`) opens the answer, and the text is still answered: a
refused request is sent once more without them (:class:`MediaPlan`).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import openai

from bot.assistants.base import Sent
from bot.assistants.errors import error_text, is_unknown_model, overflow_of
from bot.assistants.server import ServerMemory
from bot.domain import Attachment, DeltaCallback, UserTurn

log = logging.getLogger("threadkeeper.assistant")

NO_IMAGES = "Images aren't supported here, so I read only the text."
"""Opens the answer when the turn's images were not sent (``ASSISTANT_VISION=off``, or the server refused)."""
BAD_IMAGE = "The assistant could not use the image, so I read only the text."
"""Opens the answer when the server refused this turn's images for another reason (say, one it cannot decode)."""
IMAGE_TOKENS = 1000
"""What the chat backend reserves for one image when it fits a prompt (a large image costs about 800)."""
FILE_TEXT_TOKENS = 30_000
"""The most tokens of inlined file text one message carries on the Conversations backend (all files
together): a 20 MB log must not cost a whole context window on every later turn."""
PDF_MAX_PAGES = 500
PDF_MAX_CHARS = 200_000
"""pypdf stops reading a PDF past this many pages or characters (the token budget cuts further)."""
PDF_TIMEOUT = 30.0
"""Seconds the text extraction of one PDF may take (a pathological file must not hold the answer)."""
PDF_UNREADABLE = "[the text of this PDF could not be read]"

_MEDIA_STATUSES = frozenset({400, 413, 415, 422, 500, 501})
_WORDS: dict[str, tuple[str, ...]] = {
    "image": ("image", "vision", "multimodal", "multi-modal", "mmproj", "content type"),
    "pdf": ("input_file", "file_data", "pdf", "file input", "file type", "files are not"),
}
_UNSUPPORTED = ("not support", "unsupported", "only supported", "not a multimodal", "doesn't support",
                "does not support", "mmproj", "not enabled", "not allowed", "invalid content type",
                "does not accept", "cannot accept", "not available")
"""Words of "this server or model does not take it" (remembered), as opposed to a bad file (not remembered)."""


class MediaRefused(Exception):
    """The server refused the images (or PDFs) of a request; the request may go again without them."""

    def __init__(self, kind: str, status: int | None, unsupported: bool) -> None:
        super().__init__(f"{kind} input refused (HTTP {status})")
        self.kind = kind
        self.status = status
        self.unsupported = unsupported


def media_refusal(exc: openai.APIError, sent: Collection[str]) -> MediaRefused | None:
    """The refusal this error is, for a request that carried ``sent`` kinds of media; else None.

    Only errors that name the medium count (an image: "image", "vision", "content type"...), never an
    overflow, an unknown model, auth, rate limits or a missing route.
    """
    status = getattr(exc, "status_code", None)
    if not sent or status not in _MEDIA_STATUSES or overflow_of(exc) is not None or is_unknown_model(exc):
        return None
    text = error_text(exc)
    for kind in ("image", "pdf"):
        if kind in sent and any(word in text for word in _WORDS[kind]):
            return MediaRefused(kind, status, any(word in text for word in _UNSUPPORTED))
    return None


@dataclass
class MediaPlan:
    """Which files of one turn go as media, and the sentences that open its answer."""

    turn: UserTurn
    send: set[str]
    """Kinds sent as media (``image``, ``pdf``); the others are left out (images) or sent as text (PDFs)."""
    vision: str = "auto"
    notices: list[str] = field(default_factory=list)
    texts: dict[int, Attachment] = field(default_factory=dict)
    """PDFs already turned into text, by their place in the turn (extracted once per turn)."""

    @classmethod
    def start(cls, turn: UserTurn, vision: str, server: ServerMemory, kinds: Collection[str]) -> MediaPlan:
        send = {k for k in kinds if k != "pdf" or server.accepts("pdf")}
        plan = cls(turn, send, vision)
        if vision == "off" or (vision == "auto" and not server.accepts("image")):
            plan._drop("image", NO_IMAGES)
        return plan

    def has(self, kind: str) -> bool:
        return any(a.kind == kind for a in self.turn.attachments)

    @property
    def sending(self) -> set[str]:
        """The kinds of media this turn's request carries."""
        return {k for k in self.send if self.has(k)}

    def sends(self, attachment: Attachment) -> bool:
        return attachment.kind in self.send

    def _drop(self, kind: str, notice: str) -> None:
        self.send.discard(kind)
        if kind == "image" and self.has("image") and notice not in self.notices:
            self.notices.append(notice)

    async def refused(self, refusal: MediaRefused, server: ServerMemory) -> None:
        """Send the next request without the refused kind; remember a refusal that says "not supported"."""
        if refusal.kind not in self.send:
            raise AssertionError(f"{refusal.kind} refused twice")  # pragma: no cover
        remember = refusal.unsupported and not (refusal.kind == "image" and self.vision == "on")
        if remember:
            await server.refuse_input(refusal.kind, refusal.status)
        else:
            log.warning("the assistant server refused this message's %s input (HTTP %s); sending it without",
                        refusal.kind, refusal.status)
        self._drop(refusal.kind, NO_IMAGES if refusal.unsupported else BAD_IMAGE)

    @property
    def prefix(self) -> str:
        return "".join(f"{notice}\n" for notice in self.notices) + ("\n" if self.notices else "")

    def on_delta(self, on_delta: DeltaCallback | None) -> DeltaCallback | None:
        """``on_delta`` with this plan's sentences before the first delta (the answer streams as it reads)."""
        prefix = self.prefix
        if on_delta is None or not prefix:
            return on_delta
        said = False

        async def prefixed(delta: str) -> None:
            nonlocal said
            if not said:
                said = True
                delta = prefix + delta
            await on_delta(delta)

        return prefixed

    def finish(self, sent: Sent) -> Sent:
        return dataclasses.replace(sent, text=self.prefix + sent.text) if self.notices else sent


# ---- content ------------------------------------------------------------------------------------
def data_url(attachment: Attachment) -> str:
    return f"data:{attachment.mime};base64,{base64.b64encode(attachment.data).decode('ascii')}"


def placeholder_line(attachment: Attachment) -> str:
    """Where an image that was not sent stood, so the model knows one was shared."""
    return f"[image not shown: {attachment.name}]"


def cut_to_tokens(text: str, max_tokens: int, count: Callable[[str], int]) -> str:
    """``text`` if it fits ``max_tokens``; else its start (at a line end where one is near) and a visible note."""
    if count(text) <= max_tokens:
        return text
    keep = len(text)
    for _ in range(8):
        ratio = max_tokens / max(1, count(text[:keep]))
        if ratio >= 1:
            break
        keep = max(0, int(keep * ratio * 0.95))
    line_end = text.rfind("\n", 0, keep)
    if line_end > keep * 0.8:
        keep = line_end
    rest = len(text) - keep
    return f"{text[:keep]}\n[… the file is cut here: {rest:,} more characters are not shown]"


def bound_texts(attachments: tuple[Attachment, ...], max_tokens: int,
                count: Callable[[str], int]) -> tuple[Attachment, ...]:
    """Text attachments cut so that together they take at most ``max_tokens`` (an equal share each)."""
    texts = [a for a in attachments if a.kind == "text"]
    if not texts:
        return attachments
    share = max(1, max_tokens // len(texts))
    return tuple(dataclasses.replace(a, text=cut_to_tokens(a.text, share, count)) if a.kind == "text" else a
                 for a in attachments)


def _extract(data: bytes, max_pages: int, max_chars: int) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not reader.decrypt(""):
        return "[this PDF is encrypted; its text could not be read]"
    parts: list[str] = []
    size = 0
    pages = len(reader.pages)
    for number, page in enumerate(reader.pages):
        if number >= max_pages or size >= max_chars:
            parts.append(f"[… {pages - number:,} more pages are not shown]")
            break
        text = (page.extract_text() or "").strip()
        parts.append(text)
        size += len(text)
    text = "\n\n".join(p for p in parts if p)
    return text[:max_chars] if text else "[this PDF has no text layer (a scan?)]"


async def pdf_text(attachment: Attachment, *, max_pages: int = PDF_MAX_PAGES, max_chars: int = PDF_MAX_CHARS) -> str:
    """The text of a PDF, extracted in a worker thread (never on the event loop), bounded in time and size."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(_extract, attachment.data, max_pages, max_chars),
                                      PDF_TIMEOUT)
    except TimeoutError:
        log.warning("reading the text of a PDF took over %.0f s; answering without it", PDF_TIMEOUT)
    except Exception as exc:  # pypdf raises many kinds on a broken file
        log.warning("could not read the text of a PDF (%s: %s)", type(exc).__name__, exc)
    return PDF_UNREADABLE


async def as_text(attachment: Attachment) -> Attachment:
    """A PDF as a text attachment of the same name (its extracted text)."""
    return Attachment(attachment.name, "text", "text/plain", text=await pdf_text(attachment))


async def text_turn(plan: MediaPlan, max_tokens: int, count: Callable[[str], int]) -> UserTurn:
    """The turn as text: media not sent become text (PDFs) or a placeholder line (images), text files cut
    to ``max_tokens`` together. Media the plan sends are left out (they go as parts of their own)."""
    turn = plan.turn
    kept: list[Attachment] = []
    marks: list[str] = []
    for place, attachment in enumerate(turn.attachments):
        if plan.sends(attachment):
            continue
        if attachment.kind == "pdf":
            if place not in plan.texts:
                plan.texts[place] = await as_text(attachment)
            kept.append(plan.texts[place])
        elif attachment.kind == "image":
            marks.append(placeholder_line(attachment))
        else:
            kept.append(attachment)
    text = "\n".join([turn.text, *marks]).strip() if marks else turn.text
    return dataclasses.replace(turn, text=text, attachments=bound_texts(tuple(kept), max_tokens, count))


def media(plan: MediaPlan) -> list[Attachment]:
    """The attachments the plan sends as media, in the order they were shared."""
    return [a for a in plan.turn.attachments if plan.sends(a)]
