"""The bench's fake OpenAI under a paced stream (issue 19's streams level): long answers, a few words per delta,
one delta per interval; nothing changes while pacing is off."""

from __future__ import annotations

import json
import time

import aiohttp

from bench.fake_proc import BenchFake, paced_answer, word_chunks


def test_a_paced_answer_begins_with_the_echo_and_has_the_words_asked() -> None:
    answer = paced_answer("q1m2x", 60)
    assert answer.startswith("echo: q1m2x ") and len(answer.split()) == 60
    assert paced_answer("q1m2x", 1) == "echo: q1m2x"
    for text in (answer, "  two  spaced   words ", "one", ""):
        pieces = word_chunks(text, 3)
        assert "".join(pieces) == text
        assert all(len(piece.split()) <= 3 for piece in pieces)
    assert [len(piece.split()) for piece in word_chunks(answer, 3)] == [3] * 20


async def _stream(fake: BenchFake, text: str) -> tuple[list[dict[str, object]], list[float]]:
    """The events of one streamed turn, and when each arrived."""
    events: list[dict[str, object]] = []
    arrived: list[float] = []
    body = {"model": "gpt-test", "input": text, "stream": True}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{fake.base_url}/responses", json=body, headers={"Authorization": "Bearer test"}) as resp,
    ):
        assert resp.status == 200
        async for line in resp.content:
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
                arrived.append(time.monotonic())
    return events, arrived


async def test_the_fake_streams_a_paced_answer_three_words_per_interval() -> None:
    fake = BenchFake(turn_latency=0.0, meta_latency=0.0, context_limit=None)
    await fake.start()
    try:
        events, _ = await _stream(fake, "hello")
        deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
        assert "".join(map(str, deltas)) == fake.answer("hello") == "echo: hello"
        assert len(deltas) == 3  # the fake's own cut, unpaced

        fake.pace(3, 0.02, 12)
        assert fake.answer("hello") == paced_answer("hello", 12)
        events, arrived = await _stream(fake, "hello")
        kinds = [e["type"] for e in events]
        deltas = [str(e["delta"]) for e in events if e["type"] == "response.output_text.delta"]
        assert "".join(deltas) == fake.answer("hello") and len(deltas) == 4
        assert all(len(d.split()) == 3 for d in deltas)
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        done = next(e for e in events if e["type"] == "response.output_text.done")
        assert done["text"] == fake.answer("hello")
        first, last = (
            kinds.index("response.output_text.delta"),
            len(kinds) - 1 - kinds[::-1].index("response.output_text.delta"),
        )
        assert arrived[last] - arrived[first] >= 3 * 0.02 - 0.001  # one delta per interval

        fake.pace(0, 0.02, 12)
        assert fake.answer("hello") == "echo: hello" and fake.stream_delay == 0.0
    finally:
        await fake.stop()
