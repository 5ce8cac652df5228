"""``python -m bot slack`` as an operator starts it with the shipped manifest and no ``SLACK_AGENT_VIEW``:
Slack's agent experience is the default, so a top-level DM is answered in a thread of its own, titled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack, dm_event, event_envelope, sign
from tests.support.fixtures import free_port
from tests.support.paths import REPO_ROOT
from tests.support.serving import post_when_served
from tests.support.slack import SECRET


async def test_by_default_a_top_level_dm_is_answered_in_its_own_titled_thread(
    tmp_path: Path, redis_url: str, prefix: str, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    port = free_port()
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(tmp_path), "PYTHONPATH": str(REPO_ROOT),
           "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fake_openai.base_url, "OPENAI_MODEL": "gpt-test",
           "SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": fake_slack.api_url,
           "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "PORT": str(port), "SHUTDOWN_GRACE": "1s"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "slack", cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    event = dm_event("Plan my week, please")
    body = json.dumps(event_envelope(event))
    try:
        await post_when_served(f"http://127.0.0.1:{port}/slack/events", body,
                               {"Content-Type": "application/json", **sign(body, SECRET)}, proc)

        def answered() -> bool:
            found = fake_slack.in_thread(event["channel"], event["ts"])
            return bool(found) and not any(m.streaming for m in found)

        await fake_slack.wait_for(answered)
        [answer] = fake_slack.in_thread(event["channel"], event["ts"])
        assert "Plan my week, please" in answer.text, "the echoing fake's answer, in the DM's own thread"
        assert fake_slack.in_thread(event["channel"], None) == [], "nothing at the top level"
        [title] = fake_slack.payloads("assistant.threads.setTitle")
        assert (title["channel_id"], title["thread_ts"]) == (event["channel"], event["ts"])
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert "Traceback" not in err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
