"""Chat Completions backend for any OpenAI-compatible server (Ollama, vLLM, LiteLLM, Azure).

The server keeps nothing, so the history lives in Redis under our own thread
id (``chat_…``), with the same idle TTL as the thread map.

Sizing. The context we assume is ``CONTEXT_BUDGET`` tokens, or the server's real
context size once learned, whichever is smaller. A quarter of it
(:data:`REPLY_SHARE`) is kept for the reply; the prompt gets the rest: the
system instructions and the newest user message always go, then as many recent
turns as fit. No ``max_tokens`` is sent (some models refuse it), so the reserve
is the only room the reply is promised.

Overflow never kills a conversation here. When the server says the prompt does
not fit (OpenAI's ``context_length_exceeded``, llama.cpp's
``exceed_context_size_error``, or the usual words), the backend learns the
context size (from ``n_ctx`` and the prompt size the server counted, scaled to
our token counts; otherwise by halving the prompt that failed), remembers it for
the server and model (shared through the server notes), re-fits the history and
sends the same message again, at most :data:`FIT_ATTEMPTS` times. Only a message
that cannot fit even alone raises :class:`~bot.errors.TooLong`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import openai
from openai import AsyncOpenAI

from bot.assistants.base import Sent, ThreadGone
from bot.assistants.conversations import make_client, summary_instructions
from bot.assistants.errors import BROKEN_BODY, Overflow, broken, describe_broken, overflow_of, translate
from bot.assistants.files import IMAGE_TOKENS, MediaPlan, MediaRefused, data_url, media, media_refusal, text_turn
from bot.assistants.render import turn_text
from bot.assistants.server import Notes, ServerMemory, check_model
from bot.config import Settings
from bot.domain import Approve, Attachment, DeltaCallback, StatusCallback, ThreadKey, Turn, Usage, UserTurn, hash_user
from bot.errors import TooLong, Unavailable
from bot.profiles import Profile, base_profile
from bot.tokens import counter_for, message_tokens

log = logging.getLogger("threadkeeper.assistant")

Message = dict[str, str]

REPLY_SHARE = 0.25
"""Share of the context kept free for the reply; the prompt is fitted to the rest."""
FIT_ATTEMPTS = 4
"""Sends of one message, each re-fitted to a smaller learned context, before giving up."""
MIN_CONTEXT = 64
"""Never learn a context smaller than this (a bogus error must not shrink every thread to nothing)."""


class History(Protocol):
    """Where the chat backend keeps each thread's messages (the store's ``ChatHistory``)."""

    async def create(self, thread_id: str, platform: str, seed: list[Message]) -> None: ...

    async def read(self, thread_id: str) -> list[Message] | None:
        """The messages, oldest first; None when the thread does not exist."""
        ...

    async def append(self, thread_id: str, messages: list[Message]) -> None: ...

    async def delete(self, thread_id: str) -> None: ...

    async def replace(self, thread_id: str, messages: list[Message]) -> None:
        """Write the thread's messages anew (a speaker erased from it)."""
        ...


def item_id(content: str) -> str:
    """A user message's id in the history: the server keeps no ids, so it is its content's digest."""
    return "chat-" + hashlib.sha256(content.encode()).hexdigest()[:24]


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


def user_message(text: str, images: Sequence[Attachment]) -> dict[str, Any]:
    """The user's message: plain text, or text and ``image_url`` parts (data URLs) when images go along."""
    if not images:
        return {"role": "user", "content": text}
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    parts += [{"type": "image_url", "image_url": {"url": data_url(a)}} for a in images]
    return {"role": "user", "content": parts}


def prompt_budget(context: int) -> int:
    """Tokens the prompt may use in a context of ``context`` tokens: the rest is the reply's."""
    return context - int(context * REPLY_SHARE)


def context_for_prompt(prompt: int) -> int:
    """The smallest context whose prompt budget is ``prompt``."""
    return int(prompt / (1 - REPLY_SHARE)) + 1


def next_context(overflow: Overflow, sent: int) -> int:
    """The context to assume (in our tokens) after the server refused a prompt of ``sent`` of our tokens.

    With the server's ``n_ctx`` (llama.cpp, vLLM's words) it is scaled by how our count compares with
    the server's (``n_prompt``); otherwise, or if that would not shrink what we send, the prompt halves.
    """
    halved = context_for_prompt(sent // 2)
    size = halved
    if overflow.n_ctx:
        scale = sent / overflow.n_prompt if overflow.n_prompt else 1.0
        size = int(overflow.n_ctx * scale)
        if prompt_budget(size) >= sent:
            size = halved
    return max(MIN_CONTEXT, size)


class ChatAssistant:
    name = "chat"
    seed_limit: int | None = None  # the history is ours; CONTEXT_BUDGET bounds what each request sends

    def __init__(self, settings: Settings, history: History, client: AsyncOpenAI | None = None, *,
                 notes: Notes | None = None) -> None:
        self.settings = settings
        self.history = history
        self.client = client or make_client(settings)
        self.server = ServerMemory(str(self.client.base_url), settings.openai_model, notes)
        """Refused parameters and the learned context size (shared through ``notes``)."""
        self.count = counter_for(settings.openai_model)
        self.last_sent_tokens = 0
        """Tokens of the last request as counted here (for the bench and tests)."""

    # -- what the server takes ---------------------------------------------------------------------
    def supported(self, param: str) -> bool:
        """False once the server refused ``param`` (as this process knows it)."""
        return not any(r.endswith(f":{param}") for r in self.server.refused())

    async def refused_params(self) -> list[str]:
        """The optional parameters the server refused, from the shared notes (``doctor`` lists them)."""
        await self.server.load(force=True)
        return sorted({r.partition(":")[2] for r in self.server.refused()})

    def context_size(self) -> int:
        """The context assumed now: ``CONTEXT_BUDGET``, or the server's learned size if smaller."""
        learned = self.server.context_size
        budget = self.settings.context_budget
        return min(budget, learned) if learned else budget

    async def check_model(self) -> None:
        """Raise UnknownModel if the server does not know ``OPENAI_MODEL`` (see ``server.check_model``)."""
        await check_model(self.client, self.settings.openai_model)

    # -- threads -----------------------------------------------------------------------------------
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
        self, thread_id: str, turn: UserTurn, *, key: ThreadKey, on_delta: DeltaCallback | None = None,
        profile: Profile | None = None, on_status: StatusCallback | None = None, approve: Approve | None = None,
    ) -> Sent:
        """Images go as ``image_url`` parts while the server takes them; PDFs as their text. The history
        keeps the turn's text (text files as sent, images as placeholders), never an image's bytes.
        The profile's model, instructions and temperature apply (no tools here: refused at start)."""
        history = await self._history(thread_id)
        plan = MediaPlan.start(turn, self.settings.assistant_vision, self.server, ("image",))
        profile = profile or base_profile(self.settings)
        extra: dict[str, Any] = {"model": profile.model, "safety_identifier": f"tk-{hash_user(key.platform, key.user)}"}
        if profile.temperature is not None:
            extra["temperature"] = profile.temperature
        while True:
            try:
                text, sent = await self._answer(history, plan, plan.on_delta(on_delta), profile.instructions, extra)
            except MediaRefused as refused:
                await plan.refused(refused, self.server)
                continue
            break
        await self.history.append(thread_id, [{"role": "user", "content": text},
                                               {"role": "assistant", "content": sent.text}])
        finished = plan.finish(sent)
        finished.items = (item_id(text),)
        return finished

    async def _answer(self, history: list[Message], plan: MediaPlan, on_delta: DeltaCallback | None,
                      instructions: str, extra: dict[str, Any]) -> tuple[str, Sent]:
        """Fit, send; on overflow learn the context, re-fit and send again (bounded). Returns the user's
        text as sent (file text cut to the context) and the answer."""
        what = "chat completion"
        await self.server.load()
        images = media(plan)
        reserved = len(images) * IMAGE_TOKENS
        if plan.turn.memory:
            # Memory goes after the instructions and before the history, inside the same budget.
            instructions += f"\n\nSummary of the earlier conversation (kept by the bot): {plan.turn.memory}"
        bare = dataclasses.replace(plan.turn, attachments=())
        words = message_tokens(instructions, self.count) + message_tokens(turn_text(bare), self.count)
        for _ in range(FIT_ATTEMPTS):
            budget = prompt_budget(self.context_size()) - reserved
            # Files get at most two thirds of what the instructions and the user's words leave.
            text = turn_text(await text_turn(plan, max(64, (budget - words) * 2 // 3), self.count))
            messages = fit_budget(instructions, history, text, budget, self.count)
            tokens = self.last_sent_tokens = reserved + sum(message_tokens(m["content"], self.count)
                                                            for m in messages)
            request: list[dict[str, Any]] = [*messages[:-1], user_message(text, images)]
            try:
                sent = await (self._stream(request, on_delta, extra) if on_delta
                              else self._complete(request, what, extra))
                return text, sent
            except openai.APIError as exc:
                refusal = media_refusal(exc, plan.sending)
                if refusal is not None:
                    raise refusal from None
                overflow = overflow_of(exc)
                if overflow is None:
                    raise translate(exc, what=what) from None
            await self.server.learn_context(next_context(overflow, tokens))
            if len(messages) <= 2:
                raise TooLong(f"the message alone ({tokens} tokens) overflows the server's context")
        log.error("%s: the server still reports a context overflow after %d re-fitted attempts",
                  what, FIT_ATTEMPTS)
        raise Unavailable("context overflow after re-fitting")

    async def _complete(self, messages: Sequence[Mapping[str, Any]], what: str,
                        extra: Mapping[str, Any] | None = None) -> Sent:
        params = {"model": self.settings.openai_model, "messages": messages, **(extra or {})}
        try:
            completion = await self.server.call("chat", self.client.chat.completions.create, params)
            choices = completion.choices
            text = (choices[0].message.content or "") if choices else ""
            usage = getattr(completion, "usage", None)
        except BROKEN_BODY as exc:
            raise broken(what, describe_broken(exc)) from None
        except (AttributeError, TypeError, IndexError):
            raise broken(what, "a completion without its message") from None
        if not isinstance(text, str) or not text.strip():
            raise broken(what, "an empty answer")
        return Sent(text, _usage(usage))

    async def _stream(self, messages: Sequence[Mapping[str, Any]], on_delta: DeltaCallback,
                      extra: Mapping[str, Any] | None = None) -> Sent:
        what = "streaming an answer"
        params = {"model": self.settings.openai_model, "messages": messages, "stream": True,
                  "stream_options": {"include_usage": True}, **(extra or {})}
        parts: list[str] = []
        usage = Usage()
        finished = opened = False
        try:
            stream = await self.server.call("chat", self.client.chat.completions.create, params)
            opened = True
            async for chunk in stream:
                if chunk.usage:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices:
                    delta = choice.delta.content if choice.delta else None
                    if delta:
                        parts.append(delta)
                        await on_delta(delta)
                    finished = finished or bool(choice.finish_reason)
        except openai.APITimeoutError:
            raise
        except openai.APIConnectionError:
            if opened:
                raise broken(what, "a stream that was cut off") from None
            raise
        except BROKEN_BODY as exc:
            raise broken(what, describe_broken(exc)) from None
        if not finished:
            raise broken(what, "a stream that ended without a finish reason")
        text = "".join(parts)
        if not text.strip():
            raise broken(what, "an empty answer")
        return Sent(text, usage)

    async def delete_thread(self, thread_id: str) -> None:
        await self.history.delete(thread_id)

    async def delete_items(self, thread_id: str, item_ids: Sequence[str]) -> None:
        history = await self.history.read(thread_id)
        if history is None:
            return
        wanted = set(item_ids)
        kept: list[Message] = []
        dropping = False
        for message in history:
            if message.get("role") == "user":
                dropping = item_id(str(message.get("content"))) in wanted
            if not dropping:  # a user message that goes takes the answer to it along
                kept.append(message)
        if len(kept) < len(history):
            await self.history.replace(thread_id, kept)

    async def summarize(self, turns: Sequence[Turn], *, words: int = 120) -> Sent:
        transcript = "\n".join(f"{t['role']}: {t['text']}" for t in turns)
        messages = [{"role": "system", "content": summary_instructions(words)},
                    {"role": "user", "content": transcript}]
        try:
            sent = await self._complete(messages, "summarising")
            return Sent(sent.text.strip(), sent.usage)
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
