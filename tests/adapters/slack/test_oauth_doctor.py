"""``doctor`` with Slack OAuth on: the app's credentials judged by the fake Slack, the key, HTTP mode, the count."""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet

from adapters.slack.doctor import check_slack
from bot.checks import scrub, secrets_of
from bot.runtime import build_runtime
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_oauth import CLIENT_ID, CLIENT_SECRET
from tests.fakes.slack_server import FakeSlack
from tests.support.fixtures import settings_for_test
from tests.support.slack import SECRET

KEY = Fernet.generate_key().decode()


async def lines(redis_url: str, prefix: str, fake_openai: FakeOpenAI, fake_slack: FakeSlack,
                **overrides: Any) -> dict[str, str]:
    """``{"slack oauth": "PASS slack oauth: ...", ...}``; no line may carry a secret (``redis``: REDIS_URL)."""
    values: dict[str, Any] = {"slack_client_id": CLIENT_ID, "slack_client_secret": CLIENT_SECRET,
                              "token_encryption_key": KEY, "slack_signing_secret": SECRET,
                              "slack_api_url": fake_slack.api_url, **overrides}
    settings = settings_for_test(values.pop("redis", redis_url), prefix, fake_openai.base_url, **values)
    found = [str(line) for line in await check_slack(settings, 3.0)]
    for line in found:
        assert scrub(line, secrets_of(settings)) == line and CLIENT_SECRET not in line and KEY not in line
    return {line.split(" ", 1)[1].split(":", 1)[0]: line for line in found}


async def test_doctor_passes_oauth_and_counts_the_installed_workspaces(
    redis_url: str, prefix: str, fake_openai: FakeOpenAI, fake_slack: FakeSlack
) -> None:
    settings = settings_for_test(redis_url, prefix, fake_openai.base_url, token_encryption_key=KEY)
    runtime = build_runtime(settings)
    assert runtime.installations is not None
    for team in ("T1", "T2", "T3"):
        await runtime.installations.save("slack", team, {"team_id": team, "bot_token": f"xoxb-{team}"})
    await runtime.close()
    pieces = await lines(redis_url, prefix, fake_openai, fake_slack)
    assert pieces == {
        "slack oauth": f"PASS slack oauth: Slack accepts client id {CLIENT_ID} and its secret",
        "slack oauth key": "PASS slack oauth key: TOKEN_ENCRYPTION_KEY holds 1 Fernet key",
        "slack http": "PASS slack http: HTTP mode: /slack/events, /slack/install and /slack/oauth_redirect on PORT "
                      "3000",
        "slack installs": "PASS slack installs: 3 workspaces installed the app",
    }
    assert [c.method for c in fake_slack.calls] == ["oauth.v2.access"], "a probe with a code that cannot exist"


async def test_doctor_fails_what_oauth_cannot_start_with(
    redis_url: str, prefix: str, fake_openai: FakeOpenAI, fake_slack: FakeSlack
) -> None:
    wrong = await lines(redis_url, prefix, fake_openai, fake_slack, slack_client_secret="not-the-secret-value",
                        token_encryption_key="not-a-fernet-key", slack_app_token="xapp-1-socket")
    assert wrong["slack oauth"].startswith("FAIL slack oauth: Slack refused the app's credentials (bad_client_secret)")
    assert wrong["slack oauth key"].startswith("FAIL slack oauth key: TOKEN_ENCRYPTION_KEY is not a Fernet key")
    assert "Fernet.generate_key()" in wrong["slack oauth key"]
    assert wrong["slack http"].startswith("FAIL slack http: SLACK_APP_TOKEN: Slack OAuth serves its install pages "
                                          "in HTTP mode — unset SLACK_APP_TOKEN")
    assert "slack installs" not in wrong, "nothing to count with a key that cannot open them"

    missing = await lines(redis_url, prefix, fake_openai, fake_slack, slack_client_id=None,
                          token_encryption_key=None, slack_bot_token="xoxb-1", redis="")
    assert missing["slack oauth"].startswith("FAIL slack oauth: SLACK_CLIENT_ID is required for Slack OAuth")
    assert missing["slack oauth key"].startswith("FAIL slack oauth key: TOKEN_ENCRYPTION_KEY is required")
    assert missing["slack token"].startswith("FAIL slack token: SLACK_BOT_TOKEN: with SLACK_CLIENT_ID set")
    assert missing["slack installs"].startswith("FAIL slack installs: REDIS_URL is required for Slack OAuth")
    assert [c.method for c in fake_slack.calls] == ["oauth.v2.access"], "no probe without the credentials"
