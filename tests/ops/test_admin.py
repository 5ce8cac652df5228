"""``python -m bot threads``: real Redis, the real openai client, the loopback fake OpenAI."""

from __future__ import annotations

import io
import json

import pytest

from bot.domain import ThreadKey
from bot.ops import admin
from bot.runtime import Runtime
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import MakeRuntime
from tests.support.store import owed
from tests.support.threads import age, start

SLACK_A = ThreadKey("slack", "T1", "C1", "U1")
SLACK_B = ThreadKey("slack", "T1", "C2", "U1")
SLACK_OTHER_TEAM = ThreadKey("slack", "T2", "C1", "U1")
SLACK_THEIRS = ThreadKey("slack", "T1", "C1", "U2")
DISCORD_SAME_ID = ThreadKey("discord", "G1", "C1", "U1")
ALL = [SLACK_A, SLACK_B, SLACK_OTHER_TEAM, SLACK_THEIRS, DISCORD_SAME_ID]


class Terminal(io.StringIO):
    """Typed answers on a stdin that says it is a terminal."""

    def isatty(self) -> bool:
        return True


async def world(rt: Runtime, keys: list[ThreadKey] = ALL) -> dict[ThreadKey, str]:
    return {key: await start(rt, key, f"m{i}") for i, key in enumerate(keys)}


async def snapshot(rt: Runtime) -> dict[str, object]:
    """Every key under the test's prefix with its type and value (TTL-free)."""
    out: dict[str, object] = {}
    async for name in rt.redis.scan_iter(match=f"{rt.store.keys.prefix}:*"):
        kind = await rt.redis.type(name)
        if kind == "hash":
            out[name] = await rt.redis.hgetall(name)
        elif kind == "zset":
            out[name] = await rt.redis.zrange(name, 0, -1, withscores=True)
        elif kind == "set":
            out[name] = sorted(await rt.redis.smembers(name))
        elif kind == "list":
            out[name] = await rt.redis.lrange(name, 0, -1)
        else:
            out[name] = await rt.redis.get(name)
    return out


async def run(rt: Runtime, *args: str, stdin: io.StringIO | None = None) -> int:
    return await admin.main(rt, list(args), stdin=stdin or io.StringIO())


async def test_list_json_gives_one_record_per_thread(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = await make_runtime()
    convs = await world(rt, [SLACK_A, DISCORD_SAME_ID])
    await age(rt, SLACK_A, 3 * 86400)

    assert await run(rt, "list", "--json") == 0
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 2
    oldest = records[0]
    assert {k: oldest[k] for k in ("platform", "workspace", "channel", "user", "thread_id", "backend")} == {
        "platform": "slack",
        "workspace": "T1",
        "channel": "C1",
        "user": "U1",
        "thread_id": convs[SLACK_A],
        "backend": "conversations",
    }
    assert oldest["created"].endswith("Z") and oldest["last_active"] < records[1]["last_active"]
    assert oldest["input_tokens"] > 0 and oldest["output_tokens"] > 0
    # A stray conversation is recognisable on the provider's side, without names or text.
    meta = fake_openai.conversations[convs[SLACK_A]].metadata
    assert meta["platform"] == "slack" and meta["user"] and "U1" not in json.dumps(meta)
    assert "hello" not in json.dumps(meta)

    assert await run(rt, "list", "--json", "--platform", "discord") == 0
    (only,) = capsys.readouterr().out.splitlines()
    assert json.loads(only)["thread_id"] == convs[DISCORD_SAME_ID]
    assert await run(rt, "list", "--json", "--idle-over", "2d") == 0
    (idle,) = capsys.readouterr().out.splitlines()
    assert json.loads(idle)["thread_id"] == convs[SLACK_A]


async def test_list_table_is_aligned_and_survives_a_lapsed_mapping(
    make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = await make_runtime()
    convs = await world(rt, [SLACK_A, DISCORD_SAME_ID])
    await rt.redis.delete(rt.store.keys.thread(SLACK_A))  # Redis TTL lapsed; the index still knows it
    assert await run(rt, "list") == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == list(admin.COLUMNS)
    assert len(rows) == 2 and all(
        row.index(convs[k]) == header.index("thread_id")
        for row, k in zip(rows, [SLACK_A, DISCORD_SAME_ID], strict=True)
    )
    assert rows[0].split()[:6] == ["slack", "T1", "C1", "U1", "conversations", convs[SLACK_A]]
    assert rows[0].split()[6] == "-"  # creation time died with the mapping


async def test_stats_counts_by_platform_and_backend(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = await make_runtime(openai_max_retries=0)
    await world(rt, [SLACK_A, SLACK_B, DISCORD_SAME_ID])
    chat = await make_runtime(assistant_backend="chat")
    await start(chat, SLACK_THEIRS, "m-chat")
    await age(rt, SLACK_B, 10 * 86400)
    fake_openai.fail_next(500, path_prefix="/v1/conversations/")
    assert (await rt.core.forget(SLACK_A)).remote_pending == 1

    assert await run(rt, "stats", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threads"] == 3
    assert report["by_platform"] == {"discord": 1, "slack": 2}
    assert report["by_backend"] == {"chat": 1, "conversations": 2}
    assert report["queued_remote_deletions"] == 1
    assert report["oldest_activity"] < report["newest_activity"]

    assert await run(rt, "stats") == 0
    text = capsys.readouterr().out
    assert "by platform:             discord 1, slack 2" in text
    assert "queued remote deletions: 1" in text
    assert "(10d ago)" in text


async def test_purge_all_deletes_every_remote_thread_and_leaves_no_mapping(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = await make_runtime(openai_max_retries=0)
    convs = await world(rt)
    fake_openai.fail_next(500, path_prefix="/v1/conversations/")
    assert (await rt.core.forget(SLACK_A)).remote_pending == 1  # a deletion still owed

    assert await run(rt, "purge", "--all", "--yes") == 0
    assert "Deleted 4 threads" in capsys.readouterr().out
    for conv in convs.values():
        assert fake_openai.conversations[conv].deleted
    assert fake_openai.orphan_items == set()
    assert fake_openai.active_conversations == {}
    assert await rt.store.index_entries() == []
    assert await owed(rt.store) == {}
    left = sorted(await snapshot(rt))
    assert not [k for k in left if ":thread:" in k or ":turns:" in k or ":user:" in k or ":index:" in k], left


async def test_purge_dry_run_changes_nothing(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = await make_runtime()
    await world(rt)
    before = await snapshot(rt)
    fake_openai.reset_calls()
    assert await run(rt, "purge", "--all", "--dry-run") == 0
    assert await run(rt, "purge", "--idle-over", "1m", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "Would delete 5 threads" in out and "Would delete 0 threads" in out
    assert fake_openai.calls == []
    assert await snapshot(rt) == before


async def test_purge_idle_over_keeps_recent_threads(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime()
    convs = await world(rt, [SLACK_A, SLACK_B])
    await age(rt, SLACK_A, 8 * 86400)
    assert await run(rt, "purge", "--idle-over", "7d", "--yes") == 0
    assert fake_openai.conversations[convs[SLACK_A]].deleted
    assert not fake_openai.conversations[convs[SLACK_B]].deleted
    assert [k for k, _ in await rt.store.index_entries()] == [SLACK_B]


async def test_purge_without_a_terminal_and_without_yes_refuses(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = await make_runtime()
    await world(rt, [SLACK_A])
    before = await snapshot(rt)
    assert await run(rt, "purge", "--all") == 2
    captured = capsys.readouterr()
    assert len(captured.err.splitlines()) == 1 and "--yes" in captured.err
    assert captured.out == ""
    assert await snapshot(rt) == before
    assert fake_openai.count("DELETE", "/v1/") == 0


async def test_purge_on_a_terminal_asks_first(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = await make_runtime()
    convs = await world(rt, [SLACK_A, SLACK_B])
    assert await run(rt, "purge", "--all", stdin=Terminal("n\n")) == 1
    captured = capsys.readouterr()
    assert "Delete 2 threads? [y/N]" in captured.err and "nothing deleted" in captured.out
    assert fake_openai.count("DELETE", "/v1/") == 0
    assert await run(rt, "purge", "--all", stdin=Terminal("y\n")) == 0
    assert all(fake_openai.conversations[c].deleted for c in convs.values())
    assert await rt.store.index_entries() == []


async def test_forget_user_erases_only_that_user_across_workspaces(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = await make_runtime()
    convs = await world(rt)
    assert await run(rt, "forget-user", "slack", "U1") == 0
    assert "Erased 3 threads" in capsys.readouterr().out
    mine = [SLACK_A, SLACK_B, SLACK_OTHER_TEAM]
    for key in mine:
        assert fake_openai.conversations[convs[key]].deleted
        assert await rt.store.get_thread(key) is None
        assert await rt.store.user_keys(key.user_id) == []
    for key in (SLACK_THEIRS, DISCORD_SAME_ID):
        assert not fake_openai.conversations[convs[key]].deleted
        assert await rt.store.get_thread(key) is not None
    assert fake_openai.orphan_items == set()
    assert sorted(k.id for k, _ in await rt.store.index_entries()) == sorted([SLACK_THEIRS.id, DISCORD_SAME_ID.id])


async def test_forget_user_in_one_workspace_and_owed_deletions(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = await make_runtime(openai_max_retries=0)
    convs = await world(rt, [SLACK_A, SLACK_B, SLACK_OTHER_TEAM])
    fake_openai.fail_next(500, path_prefix=f"/v1/conversations/{convs[SLACK_B]}")
    assert (await rt.core.forget(SLACK_B)).remote_pending == 1
    assert await run(rt, "forget-user", "slack", "U1", "--workspace", "T1") == 0
    assert "Erased 1 threads" in capsys.readouterr().out
    assert fake_openai.conversations[convs[SLACK_A]].deleted
    assert fake_openai.conversations[convs[SLACK_B]].deleted  # the owed deletion was finished too
    assert await owed(rt.store) == {}
    assert not fake_openai.conversations[convs[SLACK_OTHER_TEAM]].deleted


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--idle-over", "3x"],
        ["purge", "--idle-over", "soon", "--yes"],
        ["purge", "--idle-over", "0d", "--dry-run"],
        ["purge", "--yes"],
        ["purge", "--all", "--idle-over", "1d"],
        ["shred"],
        [],
    ],
)
async def test_bad_command_lines_are_one_line_and_exit_2(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    rt = await make_runtime()
    await world(rt, [SLACK_A])
    fake_openai.reset_calls()
    assert await run(rt, *args) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("threads: error: ") and "Traceback" not in line
    assert captured.out == "" and fake_openai.calls == []
    assert len(await rt.store.index_entries()) == 1
