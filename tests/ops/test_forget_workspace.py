"""``threads forget-workspace``: every thread of one workspace goes through the one deleter; others stay."""

from __future__ import annotations

import io

from bot.domain import ThreadKey
from bot.ops import admin
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import MakeRuntime
from tests.support.threads import start

GONE = [ThreadKey("slack", "T0123", "C1", "U1"), ThreadKey("slack", "T0123", "C2", "U2"),
        ThreadKey("slack", "T0123", "C3", "*")]
KEPT = [ThreadKey("slack", "T9", "C1", "U1"), ThreadKey("discord", "T0123", "C1", "U1")]


async def test_forget_workspace_erases_that_workspace_only(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    rt = await make_runtime()
    threads = {key: await start(rt, key, f"m{i}") for i, key in enumerate([*GONE, *KEPT])}
    out, err = io.StringIO(), io.StringIO()
    assert await admin.main(rt, ["forget-workspace", "slack", "T0123"], out=out, err=err) == 0, err.getvalue()
    assert "Erased 3 threads of slack workspace T0123" in out.getvalue()
    for key in GONE:
        assert await rt.store.get_thread(key) is None
        assert fake_openai.conversations[threads[key]].deleted
    for key in KEPT:
        assert await rt.store.get_thread(key) is not None
        assert not fake_openai.conversations[threads[key]].deleted
    left = {k for k, _ in await rt.store.index_entries()}
    assert left == set(KEPT)
