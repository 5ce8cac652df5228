"""Default backend: OpenAI Responses + Conversations (a ``conv_…`` id is our thread id)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import httpx2
import openai
from openai import AsyncOpenAI, DefaultAioHttpClient

from bot.assistants.base import ContextOverflow, Sent, ThreadGone
from bot.assistants.errors import translate
from bot.config import Settings
from bot.domain import DeltaCallback, ThreadKey, Turn, Usage, hash_user
from bot.errors import Unavailable

log = logging.getLogger("threadkeeper.assistant")

MAX_SEED_ITEMS = 20
"""``conversations.create(items=...)`` takes at most 20 items per call."""
LOCKED_RETRIES = 5
SUMMARY_INSTRUCTIONS = (
    "Summarise this conversation in at most 120 words for a colleague who will continue it. "
    "Keep facts, decisions and open questions; no preamble."
)


def make_client(settings: Settings) -> AsyncOpenAI:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unset"
    # aiohttp transport: at hundreds of answers in flight it costs far less CPU than the default.
    limits = httpx2.Limits(
        max_connections=settings.openai_max_connections, max_keepalive_connections=settings.openai_max_connections
    )
    return AsyncOpenAI(
        api_key=key,
        base_url=settings.openai_base_url,
        timeout=settings.openai_timeout,
        max_retries=settings.openai_max_retries,
        http_client=DefaultAioHttpClient(timeout=settings.openai_timeout, limits=limits),
    )


def _looks_gone(exc: openai.NotFoundError) -> bool | None:
    """True/False when the error says it; None when a compatible server gave no clue.

    The SDK hands us the inner ``error`` object as ``exc.body``; OpenAI's own
    shape has ``type`` and ``message`` there, FastAPI-style servers only ``detail``.
    """
    code = exc.code
    if code == "model_not_found":
        return False
    if code in ("conversation_not_found", "not_found"):
        return True
    body = exc.body if isinstance(exc.body, dict) else {}
    message = body.get("message")
    if isinstance(message, str) and "type" in body:
        return "conversation" in message.lower()
    return None


def usage_of(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    details = getattr(usage, "input_tokens_details", None)
    return Usage(
        input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
        cached_tokens=int(getattr(details, "cached_tokens", 0) or 0),
    )


class ConversationsAssistant:
    name = "conversations"

    def __init__(self, settings: Settings, client: AsyncOpenAI | None = None) -> None:
        self.settings = settings
        self.client = client or make_client(settings)

    async def create_thread(self, key: ThreadKey, seed: Sequence[Turn] = ()) -> str:
        items: list[Any] = [
            {"type": "message", "role": t["role"], "content": t["text"]} for t in list(seed)[-MAX_SEED_ITEMS:]
        ]
        metadata = {"app": "threadkeeper", "platform": key.platform, "user": hash_user(key.platform, key.user)}
        try:
            if items:
                conv = await self.client.conversations.create(items=items, metadata=metadata)
            else:
                conv = await self.client.conversations.create(metadata=metadata)
        except openai.APIError as exc:
            raise translate(exc, what="creating a conversation") from None
        return conv.id

    def _params(self, thread_id: str, text: str, key: ThreadKey) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.settings.openai_model,
            "conversation": thread_id,
            "input": text,
            "instructions": self.settings.assistant_instructions,
            "prompt_cache_key": f"tk-{key.digest}",
            "truncation": self.settings.context_truncation,
        }
        if self.settings.context_compact_threshold:
            params["context_management"] = [
                {"type": "compaction", "compact_threshold": self.settings.context_compact_threshold}
            ]
        return params

    async def send(
        self, thread_id: str, text: str, *, key: ThreadKey, on_delta: DeltaCallback | None = None
    ) -> Sent:
        params = self._params(thread_id, text, key)
        delay = 0.1
        for attempt in range(LOCKED_RETRIES):
            try:
                if on_delta is None:
                    response = await self.client.responses.create(**params)
                    return Sent(response.output_text, usage_of(response.usage))
                return await self._stream(params, on_delta)
            except openai.NotFoundError as exc:
                gone = _looks_gone(exc)
                if gone is None:
                    gone = await self._confirm_gone(thread_id)
                if gone:
                    raise ThreadGone(thread_id) from None
                raise translate(exc, what="sending a message") from None
            except openai.BadRequestError as exc:
                if exc.code == "conversation_locked" and attempt < LOCKED_RETRIES - 1:
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                raise translate(exc, what="sending a message") from None
            except openai.APIError as exc:
                raise translate(exc, what="sending a message") from None
        raise Unavailable("conversation stayed locked")

    async def _stream(self, params: dict[str, Any], on_delta: DeltaCallback) -> Sent:
        stream = await self.client.responses.create(**params, stream=True)
        parts: list[str] = []
        usage = Usage()
        async with stream:
            async for event in stream:
                usage = await self._on_event(event, parts, usage, on_delta)
        return Sent("".join(parts), usage)

    @staticmethod
    async def _on_event(event: Any, parts: list[str], usage: Usage, on_delta: DeltaCallback) -> Usage:
        """Handle one stream event; returns the usage known so far."""
        if event.type == "response.output_text.delta":
            parts.append(event.delta)
            await on_delta(event.delta)
        elif event.type == "response.completed":
            return usage_of(event.response.usage)
        elif event.type == "response.failed":
            error = event.response.error
            code = error.code if error else None
            if code == "context_length_exceeded":
                raise ContextOverflow(error.message if error else "")
            log.error("response failed: %s", error)
            raise Unavailable(f"response failed: {code}")
        elif event.type == "error":
            if event.code == "context_length_exceeded":
                raise ContextOverflow(event.message)
            log.error("stream error: %s %s", event.code, event.message)
            raise Unavailable(f"stream error: {event.code}")
        return usage

    async def _confirm_gone(self, thread_id: str) -> bool:
        """A bare 404 (compatible servers): ask whether the conversation still exists."""
        try:
            await self.client.conversations.retrieve(thread_id)
        except openai.NotFoundError:
            return True
        except openai.APIError as exc:
            raise translate(exc, what="checking a conversation") from None
        return False

    async def delete_thread(self, thread_id: str) -> None:
        """Delete the items first: deleting a conversation alone leaves them on the provider."""
        try:
            item_ids = [item.id async for item in self.client.conversations.items.list(thread_id, limit=100)]
            for start in range(0, len(item_ids), 8):
                await asyncio.gather(
                    *(
                        self._delete_item(thread_id, item_id)
                        for item_id in item_ids[start : start + 8]
                        if item_id
                    )
                )
            await self.client.conversations.delete(thread_id)
        except openai.NotFoundError:
            return

    async def _delete_item(self, thread_id: str, item_id: str) -> None:
        try:
            await self.client.conversations.items.delete(item_id, conversation_id=thread_id)
        except openai.NotFoundError:
            return

    async def summarize(self, turns: Sequence[Turn]) -> str:
        transcript = "\n".join(f"{t['role']}: {t['text']}" for t in turns)
        try:
            response = await self.client.responses.create(
                model=self.settings.openai_model,
                instructions=SUMMARY_INSTRUCTIONS,
                input=transcript,
                store=False,
            )
        except openai.APIError as exc:
            raise translate(exc, what="summarising") from None
        return response.output_text.strip()

    async def close(self) -> None:
        await self.client.close()
