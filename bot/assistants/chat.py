"""Chat Completions backend for any OpenAI-compatible server (Ollama, vLLM, LiteLLM, Azure).

The server keeps nothing, so the history lives in Redis under our own thread
id (``chat_…``), with the same idle TTL as the thread map. What is sent each
turn is bounded by ``CONTEXT_BUDGET`` tokens: the system instructions and the
newest user message always go, then as many recent turns as fit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import openai
from openai import AsyncOpenAI

from bot.assistants.base import Sent, ThreadGone
from bot.assistants.conversations import SUMMARY_INSTRUCTIONS, make_client
from bot.assistants.errors import translate
from bot.config import Settings
from bot.domain import DeltaCallback, ThreadKey, Turn, Usage
from bot.errors import TooLong
from bot.tokens import counter_for, message_tokens

Message = dict[str, str]


class History(Protocol):
    """Where the chat backend keeps each thread's messages (the store's ``ChatHistory``)."""

    async def create(self, thread_id: str, platform: str, seed: list[Message]) -> None: ...

    async def read(self, thread_id: str) -> list[Message] | None:
        """The messages, oldest first; None when the thread does not exist."""
        ...

    async def append(self, thread_id: str, messages: list[Message]) -> None: ...

    async def delete(self, thread_id: str) -> None: ...


def fit_budget(
    instructions: str, history: Sequence[Message], text: str, budget: int, count: Callable[[str], int]
) -> list[Message]:
    """System + newest history that fits + the user's message, never over ``budget`` tokens."""
    system: Message = {"role": "system", "content": instructions}
    user: Message = {"role": "user", "content": text}
    used = message_tokens(instructions, count) + message_tokens(text, count)
    if used > budget:
        raise TooLong(f"instructions and message need {used} tokens, budget {budget}")
    kept: list[Message] = []
    for message in reversed(history):
        cost = message_tokens(message["content"], count)
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    # A history that starts with an assistant turn reads oddly to some models; drop it.
    while kept and kept[0]["role"] == "assistant":
        kept.pop(0)
    return [system, *kept, user]


class ChatAssistant:
    name = "chat"

    def __init__(self, settings: Settings, history: History, client: AsyncOpenAI | None = None) -> None:
        self.settings = settings
        self.history = history
        self.client = client or make_client(settings)
        self.count = counter_for(settings.openai_model)
        self.last_sent_tokens = 0
        """Tokens of the last request as counted here (for the bench and tests)."""

    async def create_thread(self, key: ThreadKey, seed: Sequence[Turn] = ()) -> str:
        thread_id = f"chat_{uuid.uuid4().hex}"
        await self.history.create(thread_id, key.platform, [{"role": t["role"], "content": t["text"]} for t in seed])
        return thread_id

    async def _history(self, thread_id: str) -> list[Message]:
        history = await self.history.read(thread_id)
        if history is None:
            raise ThreadGone(thread_id)
        return history

    async def send(
        self, thread_id: str, text: str, *, key: ThreadKey, on_delta: DeltaCallback | None = None
    ) -> Sent:
        history = await self._history(thread_id)
        messages = fit_budget(
            self.settings.assistant_instructions, history, text, self.settings.context_budget, self.count
        )
        self.last_sent_tokens = sum(message_tokens(m["content"], self.count) for m in messages)
        try:
            sent = await (self._stream(messages, on_delta) if on_delta else self._complete(messages))
        except openai.APIError as exc:
            raise translate(exc, what="chat completion") from None
        turn = [{"role": "user", "content": text}, {"role": "assistant", "content": sent.text}]
        await self.history.append(thread_id, turn)
        return sent

    async def _complete(self, messages: list[Message]) -> Sent:
        completion = await self.client.chat.completions.create(
            model=self.settings.openai_model, messages=cast(Any, messages)
        )
        text = completion.choices[0].message.content or "" if completion.choices else ""
        return Sent(text, _usage(completion.usage))

    async def _stream(self, messages: list[Message], on_delta: DeltaCallback) -> Sent:
        stream = await self.client.chat.completions.create(
            model=self.settings.openai_model,
            messages=cast(Any, messages),
            stream=True,
            stream_options={"include_usage": True},
        )
        parts: list[str] = []
        usage = Usage()
        async for chunk in stream:
            if chunk.usage:
                usage = _usage(chunk.usage)
            for choice in chunk.choices:
                delta = choice.delta.content
                if delta:
                    parts.append(delta)
                    await on_delta(delta)
        return Sent("".join(parts), usage)

    async def delete_thread(self, thread_id: str) -> None:
        await self.history.delete(thread_id)

    async def summarize(self, turns: Sequence[Turn]) -> str:
        transcript = "\n".join(f"{t['role']}: {t['text']}" for t in turns)
        messages = [{"role": "system", "content": SUMMARY_INSTRUCTIONS}, {"role": "user", "content": transcript}]
        try:
            return (await self._complete(messages)).text.strip()
        except openai.APIError as exc:
            raise translate(exc, what="summarising") from None

    async def close(self) -> None:
        await self.client.close()


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    return Usage(
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cached_tokens=int(getattr(details, "cached_tokens", 0) or 0),
    )
