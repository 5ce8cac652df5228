"""Memory across a lost conversation: kept turns that leave the window are folded into a summary."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from bot.domain import Incoming, ThreadKey
from bot.ops import janitor
from bot.runtime import Runtime
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import MakeRuntime
from tests.support.threads import age

KEY = ThreadKey("slack", "T1", "D1", "U1")


async def waiting(rt: Runtime) -> list[str]:
    """Kept items waiting to be folded into the summary."""
    return (await rt.store.fold_pending(KEY))[2]


async def summary_of(rt: Runtime) -> str:
    """The thread's summary, as a re-prime reads it."""
    return (await rt.store.remembered(KEY))[0]


def msg(text: str, mid: str) -> Incoming:
    return Incoming(KEY, text, mid, is_dm=True)


async def chat(rt: Runtime, turns: int, *, first: str = "zebracorn") -> str:
    thread = ""
    for n in range(turns):
        text = f"My project is called {first}." if n == 0 else f"Turn {n}: tell me more."
        answer = await rt.core.handle(msg(text, f"{first}-{n}-{uuid.uuid4().hex[:6]}"))
        assert answer is not None
        thread = answer.thread_id
        await rt.core.memory.settle()
    return thread


async def test_a_lost_conversation_is_reprimed_with_the_summary_then_the_kept_turns(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(memory="summary", keep_turns=10, memory_fold_every=6)
    old = await chat(rt, 40)
    summary = await summary_of(rt)
    assert "zebracorn" in summary  # the fake's summariser echoes what it was given: turn 0 is remembered
    fake_openai.delete_conversation(old)
    answer = await rt.core.handle(msg("What is my project called?", "m-last"))
    assert answer is not None and answer.recovered and answer.text == "echo: What is my project called?"
    texts = [str(i["content"]) for i in fake_openai.conversations[answer.thread_id].items]
    assert "Summary of our earlier conversation" in texts[0] and "zebracorn" in texts[0]
    # then the items not folded yet (70 left the window, 66 folded), then the kept ones, oldest first
    assert "Turn 33" in texts[1] and "Turn 34" in texts[3] and "Turn 35" in texts[5] and "Turn 39" in texts[-3]


async def test_items_not_folded_yet_reprime_a_lost_conversation_between_summary_and_window(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(memory="summary", keep_turns=2, memory_fold_every=20)
    old = await chat(rt, 8)  # 14 items left the window: none folded yet
    assert len(await waiting(rt)) == 14 and await summary_of(rt) == ""
    assert fake_openai.count("POST", "/v1/responses") == 8  # the answers alone: no summary call
    fake_openai.delete_conversation(old)
    answer = await rt.core.handle(msg("What is my project called?", "m-last"))
    assert answer is not None and answer.recovered
    asked = [str(i["content"]) for i in fake_openai.conversations[answer.thread_id].items if i["role"] == "user"]
    assert "zebracorn" in asked[0]  # the oldest item waiting to be folded comes first
    assert [n for n in range(1, 8) if any(f"Turn {n}:" in text for text in asked)] == list(range(1, 8))
    assert "What is my project called?" in asked[-1] and len(asked) == 9  # turns 0-7, the new question
    items = fake_openai.conversations[answer.thread_id].items
    assert not any("Summary of our earlier conversation" in str(i["content"]) for i in items)  # none made yet


async def test_a_seed_over_the_servers_limit_keeps_the_summary_and_the_newest_items(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(memory="summary", keep_turns=10, memory_fold_every=20)
    old = await chat(rt, 21)  # turns 0-9 folded, 10-15 waiting (12 items), 16-20 in the window (10)
    assert len(await waiting(rt)) == 12 and "Turn 9:" in await summary_of(rt)
    fake_openai.delete_conversation(old)
    answer = await rt.core.handle(msg("What is my project called?", "m-last"))
    assert answer is not None and answer.recovered
    seeded = [str(i["content"]) for i in fake_openai.conversations[answer.thread_id].items][:-2]
    assert len(seeded) == 20  # conversations.create takes 20 items: the summary and the 19 newest
    assert "Summary of our earlier conversation" in seeded[0] and "zebracorn" in seeded[0]
    assert "echo: Turn 11:" in seeded[1] and "Turn 12:" in seeded[2] and "echo: Turn 20:" in seeded[-1]


async def test_a_slow_fold_never_delays_an_answer(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime(memory="summary", keep_turns=4, memory_fold_every=2)
    await chat(rt, 3)
    hold = fake_openai.hold_standalone()  # the summary call hangs until released; answers must not wait for it
    assert await rt.core.handle(msg("Turn 3", "m3")) is not None  # two items left the window: a fold starts
    await hold.arrived.wait()  # the fold is in its summary call
    for n in range(4, 6):
        answer = await asyncio.wait_for(rt.core.handle(msg(f"Turn {n}", f"m{n}")), 10)
        assert answer is not None
    assert rt.core.memory._folds  # a fold is still under way while the answers are all in
    hold.release()
    await rt.core.memory.settle()
    assert "Turn 1" in await summary_of(rt)


async def test_forget_and_the_janitor_leave_no_memory(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime(memory="summary", keep_turns=4, memory_fold_every=2, thread_idle_ttl="1h")
    await chat(rt, 6)
    assert await summary_of(rt) and await rt.redis.exists(rt.store.keys.fold(KEY)) in (0, 1)
    assert (await rt.core.memory.show(KEY))[0]
    await rt.core.forget(KEY)
    assert await rt.core.memory.show(KEY) == ("", 0)
    assert not await rt.redis.exists(rt.store.keys.thread(KEY), rt.store.keys.fold(KEY))
    await chat(rt, 6)
    await age(rt, KEY, 7200)
    await janitor.run_pass(rt)
    assert await rt.core.memory.show(KEY) == ("", 0)


async def test_a_failed_fold_keeps_the_turns_for_the_next(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(memory="summary", keep_turns=4, memory_fold_every=2, openai_max_retries=0)
    await chat(rt, 2)  # four items kept: nothing has left the window yet
    assert await waiting(rt) == []
    answer = await rt.core.handle(msg("Turn 2", "m-2"))
    # The fold started by that answer has not reached the fake yet (nothing awaited since): fail it.
    fake_openai.fail_next(500, path_prefix="/v1/responses")
    await rt.core.memory.settle()
    assert answer is not None and answer.text == "echo: Turn 2"
    assert len(await waiting(rt)) == 2 and await summary_of(rt) == ""
    assert await rt.core.memory.fold(KEY)  # the next fold takes them
    assert await waiting(rt) == [] and "zebracorn" in await summary_of(rt)


async def test_summary_tokens_count_against_the_daily_budget(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime(memory="summary", keep_turns=4, memory_fold_every=2, user_daily_tokens=10**9)
    await chat(rt, 2)
    before = await rt.store.tokens_today(KEY)
    await chat(rt, 3, first="again")
    folded = rt.metrics.render().decode()
    assert await rt.store.tokens_today(KEY) > before and "threadkeeper_tokens_total" in folded


async def test_memory_off_keeps_todays_behaviour(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime(memory="off", keep_turns=4)
    await chat(rt, 8)
    assert await summary_of(rt) == "" and await waiting(rt) == []
    assert fake_openai.count("POST", "/v1/responses") == 8


async def test_a_fold_that_ends_after_forget_writes_nothing_back(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(memory="summary", keep_turns=4, memory_fold_every=2)
    await chat(rt, 2)
    saves: list[bool] = []
    save_summary = rt.store.save_summary

    async def spied(*args: Any) -> bool:
        saves.append(await save_summary(*args))
        return saves[-1]

    rt.store.save_summary = spied  # type: ignore[method-assign]
    hold = fake_openai.hold_standalone()  # the fold's summary call ends only when released
    await rt.core.handle(msg("Turn 2", "m-2"))  # two items left the window: a fold starts
    # The fold has read thread, summary and items before the forget: its task only starts after the
    # answer, and a forget issued at once could otherwise overtake its first read (then nothing is folded).
    await hold.arrived.wait()
    await rt.core.forget(KEY)
    await rt.core.handle(msg("a new conversation", "m-new"))
    assert rt.core.memory._folds  # still folding the forgotten conversation
    hold.release()
    await rt.core.memory.settle()
    assert saves == [False]  # the summary came back and the write-back guard refused it
    assert await summary_of(rt) == ""  # the forgotten conversation's words did not come back
