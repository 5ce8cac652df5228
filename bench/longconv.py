"""Issue 9's long-conversation run: input tokens per turn over a long DM, per backend.

Series (one user each, one message after another, no assistant latency):

- ``conversations_auto``: the Conversations backend as shipped (``truncation="auto"``),
  the fake holding at most ``context_limit`` items in the model context;
- ``conversations_rollover``: ``CONTEXT_TRUNCATION=disabled`` on the same fake, which
  answers 400 ``context_length_exceeded`` past the limit, so the core rolls the thread over;
- ``chat_budget``: the chat backend with ``CONTEXT_BUDGET`` tokens;
- ``unbounded``: the Conversations backend on a fake without a context limit, i.e. what every
  turn would cost if nothing bounded it (the reference the other series are flat against);
- ``conversations_memory``: ``conversations_auto`` with ``MEMORY=summary``: the summary folds'
  own tokens per turn (``memory_tokens``, from the user's daily token count) on top.

Input tokens are those the fake bills (``usage.input_tokens``); for the chat backend the
backend's own count (``ChatAssistant.last_sent_tokens``) is recorded too.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from bench.core_load import RigOptions, open_rig, user_key
from bench.fake_proc import FakeProcess
from bot.assistants.chat import ChatAssistant
from bot.domain import Incoming
from bot.errors import BotError

FILLER = (
    "Here is some more context about the deployment: the staging cluster was upgraded on Monday, "
    "two services still pin the old client library, and the on-call rotation changes next week."
)


def _text(turn: int) -> str:
    return f"Turn {turn}. {FILLER}"


async def _series(
    name: str, opts: RigOptions, fake: FakeProcess, turns: int, limit: int | None, **overrides: Any
) -> dict[str, Any]:
    await asyncio.to_thread(fake.set_context_limit, limit)
    await asyncio.to_thread(fake.reset)
    rig = await open_rig(opts, fake, **overrides)
    key = user_key(0, group=f"long-{name}-")
    tokens: list[int] = []
    counted: list[int] = []
    threads: set[str] = set()
    memory: list[int] = []
    billed = 0
    errors = 0
    try:
        for turn in range(turns):
            msg = Incoming(key, _text(turn), message_id=f"l-{uuid.uuid4().hex}")
            try:
                answer = await rig.runtime.core.handle(msg)
            except BotError:
                errors += 1
                tokens.append(0)
                continue
            tokens.append(answer.usage.input_tokens if answer else 0)
            if rig.runtime.settings.memory == "summary":
                await rig.runtime.core.memory.settle()
                total = await rig.runtime.store.tokens_today(key)
                used = answer.usage.input_tokens + answer.usage.output_tokens if answer else 0
                memory.append(total - billed - used)
                billed = total
            if answer:
                threads.add(answer.thread_id)
            if isinstance(rig.runtime.assistant, ChatAssistant):
                counted.append(rig.runtime.assistant.last_sent_tokens)
        creates = await asyncio.to_thread(fake.count, "POST", "/v1/conversations")
        truncated = await asyncio.to_thread(fake.truncations)
    finally:
        await rig.runtime.close()
    half = tokens[len(tokens) // 2 :]
    peak = max(tokens, default=0)
    out: dict[str, Any] = {
        "input_tokens": tokens,
        "peak": peak,
        "last_half_min": min(half, default=0),
        "last_half_max": max(half, default=0),
        "first_turn_at_peak_band": next((i for i, t in enumerate(tokens) if t >= 0.9 * peak), None),
        "threads_used": len(threads),
        "conversations_created": creates,
        "errors": errors,
        "fake_truncations_total": truncated,
    }
    if memory:
        out["memory_tokens"] = memory
        out["memory_tokens_per_turn"] = round(sum(memory) / len(memory), 1)
    if counted:
        out["counted_tokens"] = counted
        out["counted_max"] = max(counted)
    return out


async def long_conversation(
    opts: RigOptions, fake: FakeProcess, *, turns: int, context_limit: int, budget: int
) -> dict[str, Any]:
    """All series; restores the fake's context limit (none) afterwards."""
    await asyncio.to_thread(fake.set_latency, 0.0, 0.0)
    result: dict[str, Any] = {"turns": turns, "context_limit_items": context_limit, "context_budget": budget}
    try:
        result["conversations_auto"] = await _series(
            "auto", opts, fake, turns, context_limit, context_truncation="auto"
        )
        result["conversations_rollover"] = await _series(
            "rollover", opts, fake, turns, context_limit, context_truncation="disabled"
        )
        result["chat_budget"] = await _series(
            "chat", opts, fake, turns, None, assistant_backend="chat", context_budget=budget
        )
        result["unbounded"] = await _series("unbounded", opts, fake, turns, None, context_truncation="auto")
        result["conversations_memory"] = await _series(
            "memory", opts, fake, turns, context_limit, context_truncation="auto", memory="summary",
            user_daily_tokens=10**9,
        )
    finally:
        await asyncio.to_thread(fake.set_context_limit, None)
    return result
