"""``python -m bot doctor`` against the loopback fakes: one line per piece, the fix on failure, exit code."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.discord.doctor import check_discord
from adapters.slack import SLACK_BOT_SCOPES
from adapters.slack.doctor import check_slack
from bot.config import Settings
from bot.ops import doctor
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack
from tests.support.fixtures import free_port, settings_for_test
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
LIMIT = 3.0
SECRETS = ("xoxb-test-bot-token", "xapp-test-app-token", "signing-secret-value")


def discord_token(user_id: str) -> str:
    """A token shaped like Discord's: base64(bot user id) . timestamp . hmac."""
    head = base64.urlsafe_b64encode(user_id.encode()).decode().rstrip("=")
    return f"{head}.GdocTR.doctor-test-hmac-part-0123456789"


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    fake.token = discord_token(fake.bot["id"])
    async with fake:
        yield fake


Run = Callable[..., Awaitable[tuple[int, list[str]]]]


@pytest.fixture
def good(
    redis_url: str, prefix: str, fake_openai: FakeOpenAI, fake_slack: FakeSlack, fake_discord: FakeDiscord
) -> dict[str, Any]:
    """Every piece configured, against the fakes."""
    return {
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "openai_base_url": fake_openai.base_url,
        "slack_bot_token": SECRETS[0],
        "slack_app_token": SECRETS[1],
        "slack_signing_secret": SECRETS[2],
        "slack_api_url": fake_slack.api_url,
        "discord_token": fake_discord.token,
        "discord_api_base": fake_discord.api_base,
    }


@pytest.fixture
def run(good: dict[str, Any]) -> Run:
    """``await run(**overrides)`` -> (exit code, output lines); asserts no secret is ever printed."""

    async def go(**overrides: Any) -> tuple[int, list[str]]:
        values = {**good, **overrides}
        settings: Settings = settings_for_test(values.pop("redis_url"), values.pop("redis_prefix"),
                                               values.pop("openai_base_url"), **values)
        out = io.StringIO()
        extra = (("slack", check_slack), ("discord", check_discord))
        code = await doctor.main(settings, extra=extra, limit=LIMIT, out=out)
        text = out.getvalue()
        for secret in doctor.secrets_of(settings):
            assert secret not in text
        return code, text.splitlines()

    return go


def by_piece(lines: list[str]) -> dict[str, str]:
    """``{"slack scopes": "WARN slack scopes: ..."}`` (the summary line excluded)."""
    pieces: dict[str, str] = {}
    for line in lines:
        if line.startswith(("PASS ", "FAIL ", "WARN ", "SKIP ")):
            pieces[line.split(" ", 1)[1].split(":", 1)[0]] = line
    return pieces


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAIL ")]


async def test_all_pass_with_good_settings(run: Run) -> None:
    code, lines = await run()
    pieces = by_piece(lines)
    assert code == 0, lines
    assert failures(lines) == []
    for piece in ("redis", "openai", "slack", "slack socket mode", "discord", "discord app", "discord intents"):
        assert pieces[piece].startswith(f"PASS {piece}: "), pieces
    assert "model 'gpt-test' available" in pieces["openai"]
    # The fake Web API does not send x-oauth-scopes: the doctor says so instead of guessing.
    assert pieces["slack scopes"].startswith("WARN slack scopes: ")
    assert lines[-1] == "doctor: 7 passed, 0 failed"


async def test_wrong_slack_token_fails_with_its_own_line(run: Run, fake_slack: FakeSlack) -> None:
    fake_slack.fail_next("auth.test", "invalid_auth")
    code, lines = await run()
    assert code == 1
    assert failures(lines) == [
        "FAIL slack: auth.test rejected the bot token (invalid_auth) — set SLACK_BOT_TOKEN to the Bot User "
        "OAuth Token (xoxb-…) from the app's OAuth & Permissions page"
    ]
    assert by_piece(lines)["openai"].startswith("PASS")


async def test_unknown_model_fails_with_its_own_line(run: Run) -> None:
    code, lines = await run(openai_model="gpt-x")
    assert code == 1
    assert failures(lines) == ["FAIL openai: model 'gpt-x' not found — set OPENAI_MODEL to a model your key can use"]


async def test_redis_unreachable_fails_with_its_own_line(run: Run) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    code, lines = await run(redis_url=url)
    assert code == 1
    [line] = failures(lines)
    assert line.startswith("FAIL redis: cannot connect to redis://127.0.0.1:")
    assert line.endswith("— start Redis there or fix REDIS_URL")
    assert "hunter2" not in "\n".join(lines)


async def test_rejected_openai_key_is_named_but_never_printed(run: Run) -> None:
    code, lines = await run(openai_api_key="bad-key")
    assert code == 1
    [line] = failures(lines)
    assert line.startswith("FAIL openai: ") and "rejected the API key (401)" in line
    assert "bad-key" not in "\n".join(lines)


async def test_unreachable_openai_server(run: Run) -> None:
    code, lines = await run(openai_base_url=f"http://127.0.0.1:{free_port()}/v1")
    assert code == 1
    [line] = failures(lines)
    assert line.startswith("FAIL openai: cannot reach http://127.0.0.1:") and "OPENAI_BASE_URL" in line


async def test_wrong_discord_token(run: Run) -> None:
    code, lines = await run(discord_token="not.the.token")
    assert code == 1
    assert failures(lines) == [
        "FAIL discord: GET /users/@me rejected the token (401) — set DISCORD_TOKEN to the bot token "
        "(developer portal -> Bot -> Reset Token)"
    ]


async def test_message_content_intent_needed_but_off(run: Run) -> None:
    code, lines = await run(discord_channels="123456789012345678")
    assert code == 1
    [line] = failures(lines)
    assert line.startswith("FAIL discord intents: DISCORD_CHANNELS needs the Message Content intent")


async def test_socket_mode_app_token_checked(run: Run, fake_slack: FakeSlack) -> None:
    fake_slack.fail_next("apps.connections.open", "invalid_auth")
    code, lines = await run()
    assert code == 1
    [line] = failures(lines)
    assert line.startswith("FAIL slack socket mode: apps.connections.open failed (invalid_auth) — set SLACK_APP_TOKEN")
    code, lines = await run(slack_app_token="xoxb-a-bot-token-in-the-wrong-place")
    assert code == 1 and failures(lines)[0].startswith("FAIL slack socket mode: SLACK_APP_TOKEN is not an app-level")


async def test_http_mode_needs_the_signing_secret(run: Run) -> None:
    code, lines = await run(slack_app_token=None, slack_signing_secret=None)
    assert code == 1
    [line] = failures(lines)
    assert line.startswith("FAIL slack http: HTTP mode (no SLACK_APP_TOKEN) needs SLACK_SIGNING_SECRET")
    for blank in (None, ""):  # `SLACK_APP_TOKEN=` in .env means unset, not a bad token
        code, lines = await run(slack_app_token=blank)
        assert code == 0 and by_piece(lines)["slack http"].startswith("PASS slack http: HTTP mode")


async def test_app_token_in_place_of_bot_token(run: Run) -> None:
    code, lines = await run(slack_bot_token="xapp-1-A0-123-abc")
    assert code == 1
    assert failures(lines)[0].startswith("FAIL slack: SLACK_BOT_TOKEN is an app-level token — set SLACK_BOT_TOKEN")


async def test_unconfigured_pieces_are_skipped_and_embedded_store_warns(run: Run) -> None:
    code, lines = await run(redis_url=None, slack_bot_token=None, slack_app_token=None, slack_signing_secret=None,
                            discord_token=None)
    pieces = by_piece(lines)
    assert code == 0, lines
    assert pieces["redis"].startswith("WARN redis: REDIS_URL is not set: embedded in-process store")
    assert pieces["slack"] == "SKIP slack: SLACK_BOT_TOKEN not set"
    assert pieces["discord"] == "SKIP discord: DISCORD_TOKEN not set"
    assert pieces["openai"].startswith("PASS openai: ")


# -- scopes: a tiny stand-in for Slack that reports x-oauth-scopes like the real API ----------------------------
async def scoped_slack(scopes: str) -> tuple[web.AppRunner, str]:
    async def auth_test(_request: web.Request) -> web.Response:
        body = {"ok": True, "user": "threadkeeper", "team_id": "T1", "user_id": "U1", "bot_id": "B1"}
        return web.json_response(body, headers={"x-oauth-scopes": scopes})

    async def connections_open(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "url": "wss://example.invalid/socket"})

    app = web.Application()
    app.router.add_post("/api/auth.test", auth_test)
    app.router.add_post("/api/apps.connections.open", connections_open)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/api/"


@pytest.mark.parametrize(
    ("drop", "status"),
    [(set(), "PASS"), ({"chat:write", "im:history"}, "FAIL"), ({"assistant:write"}, "WARN")],
)
async def test_scopes_compared_with_what_the_adapter_needs(run: Run, drop: set[str], status: str) -> None:
    needed = SLACK_BOT_SCOPES
    granted = ",".join(s for s in ("identify", *needed) if s not in drop)
    runner, url = await scoped_slack(granted)
    try:
        code, lines = await run(slack_api_url=url)
    finally:
        await runner.cleanup()
    line = by_piece(lines)["slack scopes"]
    assert line.startswith(f"{status} slack scopes: ")
    assert code == (1 if status == "FAIL" else 0)
    for scope in drop:
        assert scope in line
    if status == "FAIL":
        assert line.endswith("— add them to the app (paste slack-manifest.yml) and reinstall it to the workspace")


async def test_cli_exit_code(redis_url: str, fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    """The real command: settings from the environment, output on stdout, exit 1 on a failure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "DISCORD_", "REDIS_"))}
    env.update(PYTHONPATH=str(ROOT), REDIS_URL=redis_url, OPENAI_API_KEY="test", OPENAI_BASE_URL=fake_openai.base_url)

    async def doctor_cli(**extra: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "doctor", cwd=tmp_path, env={**env, **extra},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    code, out = await doctor_cli(OPENAI_MODEL="gpt-test")
    assert code == 0, out
    assert out.splitlines()[1].startswith("PASS openai: ")
    code, out = await doctor_cli(OPENAI_MODEL="nope")
    assert code == 1
    assert "FAIL openai: model 'nope' not found" in out
