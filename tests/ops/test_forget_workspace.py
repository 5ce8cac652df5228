"""``threads forget-workspace``: every thread of one workspace goes through the one deleter, then its installation
(Slack OAuth); other workspaces stay."""

from __future__ import annotations

import io

from cryptography.fernet import Fernet

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


async def test_forget_workspace_deletes_its_installation_and_says_so(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    rt = await make_runtime(token_encryption_key=Fernet.generate_key().decode())
    assert rt.installations is not None
    await rt.installations.save("slack", "T0123", {"team_id": "T0123", "bot_token": "xoxb-T0123-secret"})
    await rt.installations.save("slack", "T9", {"team_id": "T9", "bot_token": "xoxb-T9-secret"})
    conversation = await start(rt, GONE[0], "m1")
    out, err = io.StringIO(), io.StringIO()
    assert await admin.main(rt, ["forget-workspace", "slack", "T0123"], out=out, err=err) == 0, err.getvalue()
    assert out.getvalue() == ("Erased 1 threads of slack workspace T0123; its installation was deleted (the app "
                              "must be installed there again to answer).\n")
    assert fake_openai.conversations[conversation].deleted
    assert await rt.installations.find("slack", "T0123") is None
    assert await rt.installations.find("slack", "T9") is not None
    assert await rt.store.erasures.pending() == {}

    out = io.StringIO()
    assert await admin.main(rt, ["forget-workspace", "slack", "T0123"], out=out, err=err) == 0
    assert out.getvalue() == "Erased 0 threads of slack workspace T0123; it had no installation here.\n"
