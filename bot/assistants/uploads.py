"""A turn's files as Responses input, and the provider-side copies they leave (Conversations backend).

Images and PDFs up to :data:`INLINE_LIMIT` bytes go inline as data URLs (``input_image.image_url``,
``input_file.file_data``): nothing is left on the provider but the conversation's own items. Larger
ones are uploaded once through the Files API (``purpose="user_data"``) and referenced by ``file_id``,
so a 15 MB scan is not re-sent as 20 MB of base64 inside the request. A server without a Files API
(404/405/501 on ``POST /files``) is remembered, and its files go inline.

No bookkeeping of uploads is kept: an uploaded file is referenced by an item of the conversation, so
``delete_thread`` finds it there (:func:`file_ids`) and deletes it with the thread (``/forget``, the
janitor, ``threads purge``). A request that the server refused never became an item: its uploads are
deleted at once (:meth:`Uploads.discard`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import openai
from openai import AsyncOpenAI

from bot.assistants.files import MediaPlan, data_url, media
from bot.assistants.render import turn_text
from bot.assistants.server import ServerMemory
from bot.domain import Attachment

log = logging.getLogger("threadkeeper.assistant")

INLINE_LIMIT = 2 * 1024 * 1024
"""Images and PDFs up to this many bytes go inline as data URLs; larger ones through the Files API."""
UPLOAD = "upload"
"""The :meth:`ServerMemory.accepts` kind of a Files API (a server without one inlines every file)."""
_NO_ROUTE = frozenset({404, 405, 501})


def file_ids(item: Any) -> list[str]:
    """The Files API ids an input item of a conversation refers to (``input_image``/``input_file`` parts)."""
    content = getattr(item, "content", None)
    if not isinstance(content, list):
        return []
    found = []
    for part in content:
        kind = getattr(part, "type", None) if not isinstance(part, dict) else part.get("type")
        file_id = getattr(part, "file_id", None) if not isinstance(part, dict) else part.get("file_id")
        if kind in ("input_image", "input_file") and isinstance(file_id, str) and file_id:
            found.append(file_id)
    return found


async def delete_file(client: AsyncOpenAI, file_id: str) -> None:
    """Delete an uploaded file; one that is already gone is fine."""
    try:
        await client.files.delete(file_id)
    except openai.NotFoundError:
        return


class Uploads:
    """Builds one request's input; remembers what it uploaded so a refused request leaves nothing behind."""

    def __init__(self, client: AsyncOpenAI, server: ServerMemory, *, inline_limit: int = INLINE_LIMIT) -> None:
        self.client = client
        self.server = server
        self.inline_limit = inline_limit
        self.uploaded: list[str] = []

    async def input(self, plan: MediaPlan, text_of: Callable[[MediaPlan], Awaitable[Any]]) -> str | list[Any]:
        """The Responses ``input``: plain text when nothing goes as media, else one user message of parts."""
        text = turn_text(await text_of(plan))
        files = media(plan)
        if not files:
            return text
        parts: list[dict[str, Any]] = [{"type": "input_text", "text": text}] if text else []
        for attachment in files:
            parts.append(await self._part(attachment))
        return [{"type": "message", "role": "user", "content": parts}]

    async def _part(self, attachment: Attachment) -> dict[str, Any]:
        file_id = await self._upload(attachment) if len(attachment.data) > self.inline_limit else None
        if attachment.kind == "image":
            source = {"file_id": file_id} if file_id else {"image_url": data_url(attachment)}
            return {"type": "input_image", "detail": "auto", **source}
        source = {"file_id": file_id} if file_id else {"file_data": data_url(attachment)}
        return {"type": "input_file", "filename": attachment.name, **source}

    async def _upload(self, attachment: Attachment) -> str | None:
        """The new file's id; None (send it inline) when the server has no Files API or the upload failed."""
        if not self.server.accepts(UPLOAD):
            return None
        try:
            uploaded = await self.client.files.create(file=(attachment.name, attachment.data, attachment.mime),
                                                      purpose="user_data")
        except openai.APIStatusError as exc:
            if exc.status_code in _NO_ROUTE:
                await self.server.refuse_input(UPLOAD, exc.status_code)
            else:
                log.warning("uploading a %s of %d bytes failed (HTTP %s); sending it inline", attachment.kind,
                            len(attachment.data), exc.status_code)
            return None
        except openai.APIError as exc:
            log.warning("uploading a %s of %d bytes failed (%s); sending it inline", attachment.kind,
                        len(attachment.data), type(exc).__name__)
            return None
        file_id = getattr(uploaded, "id", None)
        if not isinstance(file_id, str) or not file_id:
            return None
        self.uploaded.append(file_id)
        return file_id

    async def discard(self, error: BaseException | None = None) -> None:
        """Delete this request's uploads: the server refused it, so no item refers to them.

        After a timeout or a lost connection the request may have been taken after all, and its items
        refer to the uploads: they stay, and go with the thread (the log names them otherwise).
        """
        ids, self.uploaded = self.uploaded, []
        if not ids:
            return
        if isinstance(error, openai.APITimeoutError | openai.APIConnectionError):
            log.warning("a request with uploaded files (%s) may or may not have been taken; they stay until "
                        "the thread is deleted", ", ".join(ids))
            return
        await delete_files(self.client, ids)


async def delete_files(client: AsyncOpenAI, ids: Sequence[str]) -> None:
    """Delete uploads one by one; failures are logged (each names its file id) and the rest go on."""
    for file_id in ids:
        try:
            await delete_file(client, file_id)
        except openai.APIError as exc:
            log.warning("could not delete the uploaded file %s (%s); delete it by hand", file_id,
                        type(exc).__name__)
