"""``python -m bot slack`` as an operator starts it with the shipped manifest and no ``SLACK_AGENT_VIEW``:
Slack's agent experience is the default, so a top-level DM is answered in a thread of its own, titled."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack
from tests.support.fixtures import free_port
from tests.support.paths import REPO_ROOT
from tests.support.slack import SECRET, answer_one_dm


async def test_by_default_a_top_level_dm_is_answered_in_its_own_titled_thread(
    tmp_path: Path, redis_url: str, prefix: str, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    port = free_port()
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(tmp_path), "PYTHONPATH": str(REPO_ROOT),
           "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fake_openai.base_url, "OPENAI_MODEL": "gpt-test",
           "SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": fake_slack.api_url,
           "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "PORT": str(port), "SHUTDOWN_GRACE": "1s"}
    event, _ = await answer_one_dm(env, port, tmp_path, fake_slack, "Plan my week, please")
    [answer] = fake_slack.in_thread(event["channel"], event["ts"])
    assert "Plan my week, please" in answer.text, "the echoing fake's answer, in the DM's own thread"
    assert fake_slack.in_thread(event["channel"], None) == [], "nothing at the top level"
    [title] = fake_slack.payloads("assistant.threads.setTitle")
    assert (title["channel_id"], title["thread_ts"]) == (event["channel"], event["ts"])
