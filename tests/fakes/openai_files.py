"""The Files API of the loopback fake OpenAI, and servers that refuse images or files.

Mixed into :class:`tests.fakes.openai_server.FakeOpenAI`:

* ``POST /v1/files`` (multipart, ``purpose`` and ``file``), ``GET`` and ``DELETE /v1/files/{id}``, as
  api.openai.com answers them; :attr:`FilesApi.stored` holds what is still there, :attr:`FilesApi.deleted`
  what was deleted. ``files_api = False`` imitates a server without one (404 ``{"detail": "Not Found"}``);
* a ``file_id`` in a request's ``input_image`` / ``input_file`` part must name a stored file (400 otherwise,
  like the real API), so a bot that deletes an upload still in use fails loudly;
* ``refuse_images``: a request with image input answers 400 like a model without vision does on
  api.openai.com (``"Invalid content type. image_url is only supported by certain models."``);
  ``refuse_files`` likewise for ``input_file`` parts. Refused requests are counted in ``media_refused``.
"""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .openai_state import JSON, ApiError, new_id, now

NOT_FOUND: JSON = {"detail": "Not Found"}
IMAGE_REFUSAL = "Invalid content type. image_url is only supported by certain models."
FILE_REFUSAL = "Invalid content type. input_file is not supported with this model."


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    content_type: str
    created_at: int

    def as_json(self) -> JSON:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed", "expires_at": None,
                "status_details": None}


def parts(body: JSON) -> Iterator[JSON]:
    """Every content part of a Responses ``input`` or chat ``messages`` body."""
    for key in ("input", "messages"):
        items = body.get(key)
        if not isinstance(items, list):
            continue
        for item in items:
            content = item.get("content") if isinstance(item, dict) else None
            if isinstance(content, list):
                yield from (p for p in content if isinstance(p, dict))


def image_parts(body: JSON | None) -> list[JSON]:
    """The image parts of a request body (``input_image`` or ``image_url``)."""
    return [p for p in parts(body or {}) if p.get("type") in ("input_image", "image_url")]


def file_parts(body: JSON | None) -> list[JSON]:
    return [p for p in parts(body or {}) if p.get("type") == "input_file"]


def multipart_fields(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes, str]]:
    """``name -> (filename, bytes, content type)`` of a multipart/form-data body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields: dict[str, tuple[str | None, bytes, str]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str):
            fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"",
                            part.get_content_type())
    return fields


class FilesApi:
    """The Files API routes and the media modes; ``FakeOpenAI`` calls :meth:`_init_files`."""

    def _init_files(self) -> None:
        self.stored: dict[str, StoredFile] = {}
        self.deleted: list[str] = []
        self.files_api = True
        self.refuse_images = False
        self.refuse_files = False
        self.media_refused = 0

    def add_file_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/files", self._create_file)
        router.add_get("/v1/files/{fid}", self._get_file)
        router.add_delete("/v1/files/{fid}", self._delete_file)

    # ---- the gate (before a /responses or /chat/completions request is handled) ------------------
    def _gate_media(self, method: str, path: str, body: JSON) -> None:
        if method != "POST" or path not in ("/v1/responses", "/v1/chat/completions"):
            return
        if self.refuse_images and image_parts(body):
            self.media_refused += 1
            raise ApiError(400, IMAGE_REFUSAL, param="messages" if "messages" in body else "input",
                           code="invalid_value")
        if self.refuse_files and file_parts(body):
            self.media_refused += 1
            raise ApiError(400, FILE_REFUSAL, param="input", code="invalid_value")
        for part in image_parts(body) + file_parts(body):
            file_id = part.get("file_id")
            if file_id is not None and file_id not in self.stored:
                raise ApiError(400, f"Invalid file id: '{file_id}'. The file does not exist.", param="input",
                               code="invalid_value")

    # ---- handlers --------------------------------------------------------------------------------
    def _check_api(self) -> None:
        if not self.files_api:
            raise ApiError(404, "Not Found", body=dict(NOT_FOUND))

    async def _create_file(self, request: web.Request) -> web.Response:
        self._check_api()
        if not request.content_type.startswith("multipart/"):
            raise ApiError(400, "Expected a multipart/form-data body.")
        fields = multipart_fields(request.headers["Content-Type"], await request.read())
        if "file" not in fields or "purpose" not in fields:
            raise ApiError(400, "Missing required parameter: 'file'." if "file" not in fields
                           else "Missing required parameter: 'purpose'.", param="file")
        filename, data, content_type = fields["file"]
        stored = StoredFile(new_id("file").replace("_", "-", 1), filename or "upload", fields["purpose"][1].decode(),
                            data, content_type, now())
        self.stored[stored.id] = stored
        return web.json_response(stored.as_json())

    def _stored(self, request: web.Request) -> StoredFile:
        self._check_api()
        file_id = request.match_info["fid"]
        if file_id not in self.stored:
            raise ApiError(404, f"No such File object: {file_id}", param="id")
        return self.stored[file_id]

    async def _get_file(self, request: web.Request) -> web.Response:
        return web.json_response(self._stored(request).as_json())

    async def _delete_file(self, request: web.Request) -> web.Response:
        stored = self._stored(request)
        del self.stored[stored.id]
        self.deleted.append(stored.id)
        return web.json_response({"id": stored.id, "object": "file", "deleted": True})


def turns(fake: Any) -> list[JSON]:
    """Bodies of the requests that answered a user: Responses turns on a conversation, chat completions."""
    found = []
    for record in fake.requests:
        body = record.json or {}
        if record.method == "POST" and (record.path == "/v1/chat/completions"
                                        or (record.path == "/v1/responses" and body.get("conversation"))):
            found.append(body)
    return found


def user_text(body: JSON) -> str:
    """The text of the user's message in a request body (its text parts joined)."""
    if "messages" in body:
        content = body["messages"][-1]["content"]
    else:
        content = body["input"] if isinstance(body["input"], str) else body["input"][0]["content"]
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content)


def describe(body: Any) -> str:
    """A request's parts by type, for assertion messages (never the bytes)."""
    return ", ".join(str(p.get("type")) for p in parts(body if isinstance(body, dict) else {}))
