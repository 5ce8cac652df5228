"""In-memory model and JSON builders behind the loopback fake of the OpenAI HTTP API.

Shapes follow the installed openai SDK's models (``openai.types.responses.Response``,
``openai.types.conversations.*``, ``openai.types.chat.*``) so the real client parses them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

MAX_ITEMS_PER_CALL = 20
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


@dataclass
class RequestRecord:
    method: str
    path: str
    json: JSON | None
    headers: dict[str, str]  # lower-cased header names
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class ConversationState:
    id: str
    created_at: int
    metadata: dict[str, str]
    items: list[JSON]
    created_by_request_index: int  # index into FakeOpenAI.requests; -1 when seeded by a test
    deleted: bool = False
    truncated_turns: int = 0  # responses that ran with truncation="auto" and dropped items
    dropped_items: int = 0  # total items left out of the model context by truncation="auto"

    def as_json(self) -> JSON:
        return {"id": self.id, "object": "conversation", "created_at": self.created_at,
                "metadata": dict(self.metadata)}


@dataclass
class Fault:
    status: int
    code: str | None
    message: str
    path_prefix: str
    times: int
    headers: dict[str, str]
    body: object | None
    delay: float
    type: str | None
    param: str | None


@dataclass
class Truncation:
    conversation_id: str
    dropped: int  # items left out of this turn's context
    kept: int


class ApiError(Exception):
    """Raised inside handlers; the server turns it into an OpenAI error response."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type: str | None = None, body: object | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or default_error_type(status)
        self.body = body  # sent verbatim instead of the OpenAI error envelope when set (other servers' shapes)


def default_error_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_body(message: str, *, type: str, code: str | None = None, param: str | None = None) -> JSON:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def conversation_not_found(conv_id: str) -> ApiError:
    return ApiError(404, f"Conversation with id '{conv_id}' not found.")


def model_not_found(model: str) -> ApiError:
    return ApiError(404, f"The model '{model}' does not exist or you do not have access to it.",
                    code="model_not_found")


def validate_items(items: object) -> list[JSON]:
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ApiError(400, "Invalid 'items': expected an array of objects.", param="items",
                       code="invalid_type")
    if len(items) > MAX_ITEMS_PER_CALL:
        raise ApiError(400, f"Invalid 'items': array too long. Expected an array with maximum length "
                       f"{MAX_ITEMS_PER_CALL}, but got an array with length {len(items)} instead.",
                       param="items", code="array_above_max_length")
    return [normalize_item(i) for i in items]


def validate_metadata(metadata: object) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ApiError(400, "Invalid 'metadata': expected an object.", param="metadata", code="invalid_type")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise ApiError(400, f"Invalid 'metadata': too many properties. Expected an object with at most "
                       f"{MAX_METADATA_PAIRS} properties, but got an object with {len(metadata)} "
                       "properties instead.", param="metadata", code="object_above_max_properties")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY:
            raise ApiError(400, f"Invalid 'metadata': string too long. Expected a string with maximum "
                           f"length {MAX_METADATA_KEY}, but got a string with length {len(key)} instead.",
                           param="metadata", code="string_above_max_length")
        if not isinstance(value, str):
            raise ApiError(400, f"Invalid type for 'metadata.{key}': expected a string.",
                           param=f"metadata.{key}", code="invalid_type")
        if len(value) > MAX_METADATA_VALUE:
            raise ApiError(400, f"Invalid 'metadata.{key}': string too long. Expected a string with maximum "
                           f"length {MAX_METADATA_VALUE}, but got a string with length {len(value)} "
                           "instead.", param=f"metadata.{key}", code="string_above_max_length")
    return dict(metadata)


def normalize_item(item: JSON) -> JSON:
    """Turn an input item (e.g. ``{"role": "user", "content": "hi"}``) into a stored conversation item."""
    out = dict(item)
    if "role" in out and out.get("type", "message") == "message":
        out["type"] = "message"
        content = out.get("content")
        part_type = "output_text" if out["role"] == "assistant" else "input_text"
        if isinstance(content, str):
            part: JSON = {"type": part_type, "text": content}
            if part_type == "output_text":
                part["annotations"] = []
            out["content"] = [part]
        out.setdefault("status", "completed")
        out.setdefault("id", new_id("msg"))
    else:
        out.setdefault("id", new_id(str(out.get("type", "item")).split("_")[0]))
    return out


def item_text(item: JSON) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(item.get("output", "") or item.get("arguments", ""))


def estimate_tokens(*texts: str) -> int:
    return sum(len(t) // 4 + 1 for t in texts)


def output_message(msg_id: str, text: str, status: str = "completed") -> JSON:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if text else []
    return {"type": "message", "id": msg_id, "status": status, "role": "assistant", "content": content}


def response_json(*, resp_id: str, body: JSON, conv_id: str | None, output: list[JSON],
                  usage: JSON | None, status: str, created_at: int) -> JSON:
    done = status == "completed"
    return {
        "id": resp_id, "object": "response", "created_at": created_at, "status": status,
        "completed_at": now() if done else None, "background": False, "error": None,
        "incomplete_details": None, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "max_tool_calls": None,
        "model": body.get("model"), "output": output, "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"), "reasoning": {"effort": None, "summary": None},
        "safety_identifier": None, "service_tier": "default", "store": body.get("store", True),
        "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto", "tools": [], "top_logprobs": 0, "top_p": 1.0,
        "truncation": body.get("truncation") or "disabled", "usage": usage, "user": None,
        "metadata": body.get("metadata") or {}, "conversation": {"id": conv_id} if conv_id else None,
    }


def response_usage(input_tokens: int, cached: int, output_tokens: int) -> JSON:
    return {"input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens}


def split_chunks(text: str, parts: int = 3) -> list[str]:
    """Split ``text`` in at least ``parts`` pieces (some may be empty for very short texts)."""
    size = max(1, -(-len(text) // parts))
    chunks = [text[i:i + size] for i in range(0, len(text), size)]
    return chunks + [""] * (parts - len(chunks))


def response_stream_events(created: JSON, final: JSON, msg_id: str, text: str) -> Iterator[JSON]:
    """The Responses API SSE events for one text answer, in order, with sequence numbers."""
    part: JSON = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    loc: JSON = {"item_id": msg_id, "output_index": 0}
    events: list[JSON] = [
        {"type": "response.created", "response": created},
        {"type": "response.in_progress", "response": created},
        {"type": "response.output_item.added", "output_index": 0,
         "item": output_message(msg_id, "", "in_progress")},
        {"type": "response.content_part.added", **loc, "content_index": 0, "part": part},
    ]
    events += [{"type": "response.output_text.delta", **loc, "content_index": 0, "delta": d, "logprobs": []}
               for d in split_chunks(text)]
    events += [
        {"type": "response.output_text.done", **loc, "content_index": 0, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **loc, "content_index": 0, "part": {**part, "text": text}},
        {"type": "response.output_item.done", "output_index": 0, "item": final["output"][0]},
        {"type": "response.completed", "response": final},
    ]
    for seq, event in enumerate(events):
        yield {**event, "sequence_number": seq}


def chat_usage(prompt: int, completion: int) -> JSON:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def chat_completion(cid: str, model: str, text: str, usage: JSON) -> JSON:
    message: JSON = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    return {"id": cid, "object": "chat.completion", "created": now(), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
            "usage": usage, "service_tier": "default", "system_fingerprint": None}


def chat_chunks(cid: str, model: str, text: str, usage: JSON | None) -> Iterator[JSON]:
    base = {"id": cid, "object": "chat.completion.chunk", "created": now(), "model": model,
            "service_tier": "default", "system_fingerprint": None}
    extra: JSON = {"usage": None} if usage is not None else {}

    def chunk(delta: JSON, finish: str | None = None) -> JSON:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice], **extra}

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in split_chunks(text):
        yield chunk({"content": piece})
    yield chunk({}, "stop")
    if usage is not None:
        yield {**base, "choices": [], "usage": usage}


def model_json(model_id: str) -> JSON:
    return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "openai"}
