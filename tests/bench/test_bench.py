"""Smoke test of ``python -m bench --quick``: it runs end to end and its call counts are right.

Counts only, never times: the bench's timings depend on the machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.run import Config, parse_args, run_bench


@pytest.fixture(scope="module")
def results(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import asyncio

    cfg = Config.quick(redis_url)
    cfg.parts = [part for part in cfg.parts if part != "front"]  # test_front_door.py runs (and checks) that part
    cfg.out = tmp_path_factory.mktemp("bench")
    return asyncio.run(run_bench(cfg))


def test_happy_path_is_one_assistant_call_and_two_redis_round_trips(results: dict[str, Any]) -> None:
    happy = results["core"]["happy_path"]
    assert happy["errors"] == {}
    assert happy["assistant_calls_by_path"] == {"POST /v1/responses": happy["messages"]}
    assert happy["redis_round_trips_per_message"] <= 2
    for level in results["core"]["levels"]:
        assert level["errors"] == {}
        assert level["answered"] == level["messages"]
        assert level["assistant_calls_per_message"] == 1
        assert level["redis_round_trips_per_message"] <= 2
        assert level["in_flight_peak"] <= level["concurrency"]
    names = [variant["name"] for variant in results["core"]["variants"]]
    assert names[0].startswith("as shipped")
    for variant in results["core"]["variants"]:  # the quick run stays under the old pool's 100 connections
        assert variant["level"]["errors"] == {}
        assert variant["level"]["assistant_calls_per_message"] == 1


def test_first_message_creates_one_thread(results: dict[str, Any]) -> None:
    first = results["core"]["first_message"]
    assert first["errors"] == {}
    calls = dict(first["assistant_calls_by_path"])
    # One model check per process before its first new thread (a wrong OPENAI_MODEL creates nothing).
    assert calls.pop("GET /v1/models/gpt-test", 0) <= 1
    assert calls == {"POST /v1/conversations": first["messages"], "POST /v1/responses": first["messages"]}


def test_recovery_after_a_deleted_thread_takes_at_most_three_calls(results: dict[str, Any]) -> None:
    rec = results["core"]["recovery"]
    assert rec["errors"] == {}
    assert rec["new_threads"] == rec["messages"]
    assert rec["assistant_calls_per_message"] <= 3


def test_baselines_counts_match_the_article(results: dict[str, Any]) -> None:
    lazy, fast = results["baselines"]["lazy_check"], results["baselines"]["fail_fast"]
    assert lazy["happy"]["assistant_calls_per_message"] == 2
    assert set(lazy["happy"]["assistant_calls_by_path"]) == {"GET /v1/conversations", "POST /v1/responses"}
    assert fast["happy"]["assistant_calls_per_message"] == 1
    assert lazy["recovery"]["assistant_calls_per_message"] == 3
    assert fast["recovery"]["assistant_calls_per_message"] == 3
    for pattern in (lazy, fast):
        assert pattern["happy"]["redis_round_trips_per_message"] == 1
        for level in pattern["levels"]:
            assert level["errors"] == {}
            assert level["in_flight_peak"] <= level["workers"]
    for name, row in results["comparison"].items():
        assert row["fail_fast"]["throughput_ratio"] is not None, name


def test_long_conversation_input_is_bounded(results: dict[str, Any]) -> None:
    lc = results["long_conversation"]
    auto, chat, unbounded = lc["conversations_auto"], lc["chat_budget"], lc["unbounded"]
    assert len(auto["input_tokens"]) == lc["turns"]
    for series in (auto, chat, lc["conversations_rollover"], unbounded):
        assert series["errors"] == 0
    assert auto["threads_used"] == 1 and auto["fake_truncations_total"] > 0
    assert chat["counted_max"] <= lc["context_budget"]
    assert lc["conversations_rollover"]["threads_used"] > 1
    for series in (auto, chat):
        assert series["last_half_max"] - series["last_half_min"] <= 0.05 * series["last_half_max"]
    assert unbounded["peak"] > 2 * auto["peak"]


def test_outputs_are_written(results: dict[str, Any]) -> None:
    out = Path(results["config"]["out"])
    assert json.loads((out / "latest.json").read_text())["core"]["happy_path"]["messages"] > 0
    assert (out / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_options_override_the_defaults() -> None:
    cfg = parse_args(["--redis-url", "redis://x/1", "--users", "50", "--concurrency", "1,10,100", "--latency-ms", "0"])
    assert cfg.users == 50 and cfg.concurrency == [1, 10] and cfg.latencies_ms == [0]
    quick = parse_args(["--quick", "--redis-url", "redis://x/1"])
    assert quick.users < 50 and quick.long_turns < 200
