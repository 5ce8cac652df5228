"""``slack-manifest.yml`` asks Slack for exactly what the adapter registers, so setup is paste-the-manifest."""

from __future__ import annotations

from typing import Any

import yaml

from adapters.slack import SLACK_ASSISTANT_EVENTS, SLACK_BOT_SCOPES, SLACK_COMMANDS, SLACK_EVENTS, SlackAdapter
from adapters.slack.agent import MAX_PROMPTS, SLACK_AGENT_EVENTS, SUGGESTED_PROMPTS
from adapters.slack.oauth import SLACK_LIFECYCLE_EVENTS
from tests.support.fixtures import MakeRuntime
from tests.support.paths import REPO_ROOT

MANIFEST = REPO_ROOT / "slack-manifest.yml"


def _manifest() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


async def test_manifest_events_and_commands_are_exactly_the_registered_ones(make_runtime: MakeRuntime) -> None:
    runtime = await make_runtime(slack_bot_token="xoxb-test", slack_signing_secret="secret")
    adapter = SlackAdapter(runtime)
    manifest = _manifest()
    bot_events = manifest["settings"]["event_subscriptions"]["bot_events"]
    commands = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert len(bot_events) == len(set(bot_events)) and len(commands) == len(set(commands))
    assert set(bot_events) == adapter.registered_events == \
        set(SLACK_EVENTS) | set(SLACK_ASSISTANT_EVENTS) | set(SLACK_AGENT_EVENTS) | set(SLACK_LIFECYCLE_EVENTS)
    assert set(commands) == adapter.registered_commands == set(SLACK_COMMANDS)
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == sorted(SLACK_BOT_SCOPES)


def test_manifest_settings_for_socket_mode_interactivity_and_the_agent_view() -> None:
    manifest = _manifest()
    settings, features = manifest["settings"], manifest["features"]
    assert settings["socket_mode_enabled"] is True
    assert settings["interactivity"]["is_enabled"] is True
    assert "assistant_view" not in features, "agent_view supersedes assistant_view"
    assert features["agent_view"]["agent_description"]
    assert features["agent_view"]["suggested_prompts"] == SUGGESTED_PROMPTS
    assert 1 <= len(SUGGESTED_PROMPTS) <= MAX_PROMPTS
    assert {"app_home_opened", "app_context_changed"} <= set(settings["event_subscriptions"]["bot_events"])
    assert features["app_home"]["messages_tab_enabled"] is True
    assert features["app_home"]["messages_tab_read_only_enabled"] is False
    assert features["bot_user"]["display_name"]
    info = manifest["display_information"]
    assert len(info["description"]) <= 140 and 175 <= len(info["long_description"]) <= 4000
