"""Smoke test of the front-door part of ``python -m bench --quick`` (issue 19): it runs end to end, through
the real ``python -m bot`` processes and the baseline's, and its counts are right.

Counts only, never times: the timings depend on the machine (the one time checked, that a paced answer takes its
stream's length, is a lower bound the fake's pacing sets).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bench.front_bot import DOORS
from bench.front_report import table as front_table
from bench.run import Config, parse_args, run_bench

STREAM = {"chat.startStream", "chat.appendStream", "chat.stopStream"}


@pytest.fixture(scope="module")
def front(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cfg = Config.quick(redis_url)
    cfg.parts = ["front"]
    cfg.out = tmp_path_factory.mktemp("front")
    results = asyncio.run(run_bench(cfg))
    assert "core" not in results and "baselines" not in results
    out: dict[str, Any] = results["front_doors"]
    out["out"] = cfg.out
    return out


def _levels(front: dict[str, Any], door: str) -> list[dict[str, Any]]:
    return list(front["doors"][door]["levels"])


def test_every_door_answers_every_message_and_exits_cleanly(front: dict[str, Any]) -> None:
    cfg = front["config"]
    assert set(front["doors"]) == set(DOORS)
    for name, door in front["doors"].items():
        levels = door["levels"]
        spread = [level for level in levels if level["spread_s"]]
        assert len(levels) == len(cfg["latencies_ms"]) + 2 + len(spread), name
        assert len(spread) == (0 if name == "baseline" else 1), name  # 5 workers: arrivals change nothing
        assert all(level["users"] == cfg["users"] and round(level["spread_s"] * 1000) == max(cfg["latencies_ms"])
                   for level in spread), name
        for level in levels:  # no user's answers can come faster than the assistant's latency allows
            if level["latency_ms"] and level["messages"] >= 2 * level["users"]:
                assert 0 < level["users_of_ceiling"] <= 1, (name, level["latency_ms"], level["users"])
            else:
                assert level["users_of_ceiling"] is None, (name, level["latency_ms"], level["users"])
        for level in levels:
            assert level["not_answered"] == 0 and level["strays"] == 0, (name, level["latency_ms"])
            assert level["answered"] == level["messages"] == level["users"] * (
                cfg["baseline_messages"] if name == "baseline" and level["latency_ms"] and level["users"] > 1
                else cfg["messages"] if level["users"] > 1 else cfg["solo_messages"]), name
            assert level["new_users"]["answered"] == level["users"]
            assert level["cpu_ms_per_answer"] is not None and level["cpu_s"] >= 0
        assert door["exit_code"] == 0, (name, door["stderr_warnings"])
        assert door["peak_rss_mib"] > 0
        if name != "baseline":
            assert door["stderr_warnings"] == [], name


def test_one_auth_test_per_process_however_many_events_arrive_together(front: dict[str, Any]) -> None:
    assert front["config"]["users"] >= 10, "the first level's new users must arrive together"
    for door in ("slack_http", "slack_socket", "baseline"):
        assert front["doors"][door]["auth_test_calls"] == 1, door
    assert front["doors"]["floor"]["auth_test_calls"] == 0
    assert front["doors"]["slack_socket"]["socket_connections"] == 1


def test_a_short_answer_streams_in_at_most_three_slack_calls(front: dict[str, Any]) -> None:
    for door in ("slack_http", "slack_socket"):
        for level in _levels(front, door):
            for calls in (level["platform_calls_per_answer"], level["new_users"]["platform_calls_per_answer"]):
                assert set(calls) <= STREAM, (door, calls)
                assert calls["chat.startStream"] == calls["chat.stopStream"] == 1, (door, calls)
                assert sum(calls.values()) <= 3, (door, calls)


def test_the_baseline_posts_once_per_answer_and_discord_posts_once(front: dict[str, Any]) -> None:
    for level in _levels(front, "baseline"):
        assert level["platform_calls_per_answer"] == {"chat.postMessage": 1.0}
    for level in _levels(front, "floor"):  # the bot's own wire traffic, nothing more
        assert level["platform_calls_per_answer"] == level["new_users"]["platform_calls_per_answer"] == {
            "chat.startStream": 1.0, "chat.stopStream": 1.0}
    for level in _levels(front, "discord"):
        calls = level["platform_calls_per_answer"]
        assert calls["POST /channels/{id}/messages"] == 1.0, calls
        assert set(calls) <= {"POST /channels/{id}/messages", "POST /channels/{id}/typing",
                              "PATCH /channels/{id}/messages/{id}"}, calls


def test_one_assistant_call_per_answer_and_one_new_conversation_per_new_user(front: dict[str, Any]) -> None:
    for name in front["doors"]:
        for level in _levels(front, name):
            if level["users"] > 1:
                assert level["assistant_calls_per_answer"] == {"POST /v1/responses": 1.0}, name
            new = dict(level["new_users"]["assistant_calls_per_answer"])
            assert new.pop("GET /v1/models/gpt-test", 0) * level["users"] <= 1, name  # once per process
            assert new == {"POST /v1/conversations": 1.0, "POST /v1/responses": 1.0}, name


def test_each_bot_door_is_profiled_and_everything_is_written(front: dict[str, Any]) -> None:
    out = Path(front["out"])
    written = json.loads((out / "front_door.json").read_text())
    assert set(written["doors"]) == set(DOORS)
    page = (out / "front_door_profile.md").read_text()
    for door in ("slack_http", "slack_socket", "discord"):
        profile = front["doors"][door]["profile"]
        assert profile["answers"] > 0 and profile["top"] and profile["by_package"], door
        assert any("adapters/" in row["function"] for row in profile["top"]), door
    assert front["doors"]["baseline"]["profile"] is None and front["doors"]["floor"]["profile"] is None
    assert page.count("| cumulative CPU ms |") == 3
    assert not (out / "latest.json").exists(), "a front-door run alone leaves the core's results alone"


def test_every_paced_stream_of_the_streams_level_arrives_whole(front: dict[str, Any]) -> None:
    cfg = front["config"]
    users = cfg["stream_users"]
    assert users > 1 and cfg["stream_answer_words"] > 2 * cfg["stream_words"], "several answers, several deltas each"
    kinds = {"slack_http": {"mention", "dm"}, "slack_socket": {"mention", "dm"}, "discord": {"dm"},
             "floor": {"mention"}}
    for name, door in front["doors"].items():
        streams = door["streams"]
        assert set(streams) == kinds.get(name, set()), name
        for kind, level in streams.items():
            where = (name, kind)
            # Answered means the platform showed exactly the expected (long) text, complete: the driver's match.
            assert level["answered"] == level["messages"] == level["users"] == users, where
            assert level["not_answered"] == 0 and level["strays"] == 0, where
            assert level["new_users"]["answered"] == users, where
            assert level["first_token_to_visible_ms"]["n"] == level["first_token_to_done_ms"]["n"] == users, where
            assert level["cpu_ms_per_answer"] is not None, where
            # The answer was paced: its last delta left the fake (deltas - 1) intervals after its first.
            deltas = -(-level["answer_words"] // level["words_per_delta"])
            shortest = level["first_token_to_done_ms"]["cdf"][0][1]
            assert shortest >= (deltas - 1) * level["delta_interval_ms"] - 1, where
            assert level["assistant_calls_per_answer"] == {"POST /v1/responses": 1.0}, where
            calls = level["platform_calls_per_answer"]
            if name == "discord":
                assert calls["POST /channels/{id}/messages"] == 1.0, calls
                continue
            assert calls["chat.startStream"] == calls["chat.stopStream"] == 1.0, where
            if kind == "dm":  # the agent view: each DM answered in a thread of its own, titled, with a status
                assert calls["assistant.threads.setTitle"] == 1.0 and calls["assistant.threads.setStatus"] >= 1, calls
                assert set(calls) <= STREAM | {"assistant.threads.setTitle", "assistant.threads.setStatus"}, calls
                process = level["process"]
                assert process["exit_code"] == 0 and process["stderr_warnings"] == [], (where, process)
                assert process["auth_test_calls"] == 1 and process["peak_rss_mib"] > 0, where
            else:
                assert set(calls) <= STREAM, calls
    page = "\n".join(front_table(front))
    assert page.count("streamed in the thread)") == 3 and page.count("thread of their own)") == 2
    assert "Discord, DMs (posted, then edited)" in page


def test_front_door_options() -> None:
    cfg = parse_args(["--redis-url", "redis://x/1", "--parts", "front", "--front-doors", "slack_http,baseline",
                      "--front-users", "7", "--front-latency-ms", "0,250", "--no-profile", "--front-stream-users", "0"])
    assert cfg.parts == ["front"] and cfg.front.doors == ["slack_http", "baseline"]
    assert cfg.front.users == 7 and cfg.front.latencies_ms == [0, 250] and not cfg.front.profile
    assert cfg.front.stream_users == 0
    assert parse_args(["--redis-url", "redis://x/1"]).front.stream_users == 300
    with pytest.raises(SystemExit):
        parse_args(["--parts", "frontdoor"])
