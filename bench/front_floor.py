"""The front-door floor: the least a Python bot can do on the Slack HTTP wire, to read what the machine allows.

Not a bot anyone should run: raw aiohttp on both sides (no Bolt, no Web API client, no openai SDK) and nothing of
what makes an answer safe. Per event it checks the signature (slack_sdk's ``SignatureVerifier``, the standard
library's hmac underneath), acknowledges, keeps each user's conversation in a dict (created on the first
message), asks for one streamed response, starts a Slack stream with the first delta and stops it with the rest:
the calls the bot makes for a short answer (``chat.startStream`` and ``chat.stopStream`` in the mention's thread,
never the throttled ``chat.appendStream`` of a long one; ``POST /v1/conversations`` once per user, then one
streamed ``POST /v1/responses``). No Redis (so no dedupe, lock, pacing or transcript), no retries; an answer that
fails is one ERROR line.

What it is for: the front-door bench's share of the ``users / latency`` ceiling is set by every process on the
machine, the fakes' and the load driver's included, since all users start together and the slowest one's wait
each round is what the whole round waits for. Run beside the bot on the same fakes, the floor's share is what
this machine and these fakes leave to a lean Python bot that keeps none of the bot's guarantees; what the bot
loses beyond it is the bot's.

Settings are the bot's own variables (``SLACK_SIGNING_SECRET``, ``SLACK_BOT_TOKEN``, ``SLACK_API_URL``,
``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``OPENAI_MODEL``, ``PORT``, ``EVENT_LOOP``). Run it with
``python -m bench.bot_proc floor``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import re
import signal
from typing import Any

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

JSON = dict[str, Any]
log = logging.getLogger("bench.floor")
MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>\s*")


class Floor:
    """One process's state: the HTTP client, each user's conversation, the answers in flight."""

    def __init__(self, env: dict[str, str]) -> None:
        self.verifier = SignatureVerifier(env["SLACK_SIGNING_SECRET"])
        self.slack = env.get("SLACK_API_URL", "https://slack.com/api/").rstrip("/") + "/"
        self.openai = (env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.model = env.get("OPENAI_MODEL", "gpt-4.1-mini")
        self.slack_auth = {"Authorization": f"Bearer {env['SLACK_BOT_TOKEN']}"}
        self.openai_auth = {"Authorization": f"Bearer {env.get('OPENAI_API_KEY', '')}"}
        self.conversations: dict[str, str] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.http: aiohttp.ClientSession | None = None

    async def events(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if not self.verifier.is_valid_request(raw, request.headers):
            return web.Response(status=401)
        body = json.loads(raw)
        if body.get("type") == "url_verification":
            return web.json_response({"challenge": body.get("challenge")})
        event = body.get("event") or {}
        if event.get("type") == "app_mention" and not event.get("bot_id"):
            task = asyncio.create_task(self.answer(str(body.get("team_id")), event))
            self.tasks.add(task)
            task.add_done_callback(self._done)
        return web.Response()

    def _done(self, task: asyncio.Task[None]) -> None:
        """An answer that failed is one ERROR line (the bench reads those from stderr), never a silent one."""
        self.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("floor: an answer failed: %r", exc)

    async def _post(self, url: str, payload: JSON, headers: dict[str, str]) -> JSON:
        assert self.http is not None
        async with self.http.post(url, json=payload, headers=headers) as resp:
            body = dict(await resp.json())
        if resp.status >= 300 or body.get("ok") is False:
            raise RuntimeError(f"{url}: HTTP {resp.status}, {body}")
        return body

    async def answer(self, team: str, event: JSON) -> None:
        user, channel = str(event["user"]), str(event["channel"])
        conversation = self.conversations.get(f"{channel}:{user}")
        if conversation is None:
            conversation = str((await self._post(f"{self.openai}/conversations", {}, self.openai_auth))["id"])
            self.conversations[f"{channel}:{user}"] = conversation
        text = MENTION.sub("", str(event.get("text") or "")).strip()
        request = {"model": self.model, "conversation": conversation, "input": text, "stream": True}
        deltas: list[str] = []
        ts = ""
        assert self.http is not None
        async with self.http.post(f"{self.openai}/responses", json=request, headers=self.openai_auth) as resp:
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue
                data = json.loads(line[6:])
                if data.get("type") != "response.output_text.delta" or not data.get("delta"):
                    continue
                deltas.append(str(data["delta"]))
                if not ts:
                    started = await self._post(f"{self.slack}chat.startStream", {
                        "channel": channel, "thread_ts": event["ts"], "markdown_text": deltas[0],
                        "recipient_team_id": team, "recipient_user_id": user}, self.slack_auth)
                    ts = str(started["ts"])
        if not ts:
            raise RuntimeError("the assistant's answer had no text")
        await self._post(f"{self.slack}chat.stopStream",
                         {"channel": channel, "ts": ts, "markdown_text": "".join(deltas[1:])}, self.slack_auth)


async def serve(env: dict[str, str]) -> None:
    floor = Floor(env)

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/slack/events", floor.events)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as floor.http:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", int(env.get("PORT", "3000"))).start()
        await stop.wait()
        await runner.cleanup()
        await asyncio.gather(*floor.tasks, return_exceptions=True)


def main() -> int:
    env = dict(os.environ)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s", level=logging.WARNING)
    if env.get("EVENT_LOOP", "auto") != "asyncio" and importlib.util.find_spec("uvloop") is not None:
        import uvloop  # the bot's own default where it is installed (``EVENT_LOOP=auto``)

        uvloop.run(serve(env))
    else:
        asyncio.run(serve(env))
    return 0
