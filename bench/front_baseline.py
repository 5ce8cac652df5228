"""The front-door baseline: the article's fail-fast pattern as a plain synchronous Bolt app, over HTTP.

What the expiring-threads article would deploy, and nothing more: slack_bolt's ``App`` with its
defaults (the token checked once at start, signatures verified, every listener acknowledged at once
and run on Bolt's own pool of worker threads), a synchronous ``openai.OpenAI`` client and a
synchronous ``redis.Redis`` holding each user's conversation id under one key. The listener sends
the message (no streaming); on a 404 it creates a conversation, saves it and sends again; then one
``chat.postMessage`` (``say``) with the whole answer. No dedupe, no per-thread lock, no transcript,
no pacing. Bolt's ``SlackAppDevelopmentServer`` serves one request at a time; here the same
dispatch sits behind the standard library's ``ThreadingHTTPServer`` so the HTTP server is not what
limits the baseline.

Settings are the bot's own variables: ``SLACK_BOT_TOKEN``, ``SLACK_SIGNING_SECRET``, ``SLACK_API_URL``,
``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``OPENAI_MODEL``, ``REDIS_URL``, ``REDIS_PREFIX``, ``PORT``.
Run it with ``python -m bench.bot_proc baseline``.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

import openai
import redis
from slack_bolt import App, BoltRequest, Say
from slack_sdk import WebClient

INSTRUCTIONS = "You are a helpful assistant in a team chat."
MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>\s*")


class FailFast:
    """Send; on 404 create, save, send again (the article's recommendation)."""

    def __init__(self, client: openai.OpenAI, store: redis.Redis, prefix: str, model: str) -> None:
        self.client = client
        self.store = store
        self.prefix = prefix
        self.model = model

    def _new_thread(self, key: str) -> str:
        thread_id = self.client.conversations.create().id
        self.store.set(key, thread_id)
        return thread_id

    def _send(self, thread_id: str, text: str) -> str:
        response = self.client.responses.create(model=self.model, conversation=thread_id, input=text,
                                                instructions=INSTRUCTIONS)
        return response.output_text

    def answer(self, team: str, channel: str, user: str, text: str) -> str:
        key = f"{self.prefix}:frontbase:{team}:{channel}:{user}"
        found = self.store.get(key)
        thread_id = str(found) if found else self._new_thread(key)
        try:
            return self._send(thread_id, text)
        except openai.NotFoundError:
            return self._send(self._new_thread(key), text)


def build_app(env: dict[str, str]) -> App:
    api_url = env.get("SLACK_API_URL") or WebClient.BASE_URL
    client = WebClient(token=env["SLACK_BOT_TOKEN"], base_url=api_url if api_url.endswith("/") else api_url + "/")
    app = App(client=client, signing_secret=env["SLACK_SIGNING_SECRET"], name="baseline")
    pattern = FailFast(
        openai.OpenAI(api_key=env.get("OPENAI_API_KEY", "bench"), base_url=env.get("OPENAI_BASE_URL"),
                      timeout=60.0, max_retries=2),
        redis.Redis.from_url(env["REDIS_URL"], decode_responses=True),
        env.get("REDIS_PREFIX", "tk"),
        env.get("OPENAI_MODEL", "gpt-4.1-mini"),
    )

    def reply(body: dict[str, Any], event: dict[str, Any], say: Say, in_thread: bool) -> None:
        text = MENTION.sub("", str(event.get("text") or "")).strip()
        answer = pattern.answer(str(body.get("team_id")), str(event["channel"]), str(event["user"]), text)
        say(text=answer, thread_ts=(event.get("thread_ts") or event["ts"]) if in_thread else event.get("thread_ts"))

    @app.event("app_mention")
    def on_mention(body: dict[str, Any], event: dict[str, Any], say: Say) -> None:
        reply(body, event, say, True)

    @app.event("message")
    def on_message(body: dict[str, Any], event: dict[str, Any], say: Say) -> None:
        if event.get("channel_type") == "im" and not event.get("subtype") and not event.get("bot_id"):
            reply(body, event, say, False)

    return app


def serve(app: App, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            headers: dict[str, str | Sequence[str]] = {k.lower(): v for k, v in self.headers.items()}
            response = app.dispatch(BoltRequest(body=body, headers=headers))
            self._send(response.status, response.body.encode(), response.headers)

        def do_GET(self) -> None:
            self._send(200 if self.path == "/healthz" else 404, b"{}", {"content-type": ["application/json"]})

        def _send(self, status: int, data: bytes, headers: dict[str, Any]) -> None:
            self.send_response(status)
            for name, values in headers.items():
                if name.lower() != "content-length":
                    for value in values:
                        self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024
        """socketserver's listen backlog is 5: 100 users connecting at once had connections reset."""
        daemon_threads = True

    return Server(("127.0.0.1", port), Handler)


def main() -> int:
    env = dict(os.environ)
    server = serve(build_app(env), int(env.get("PORT", "3000")))

    def stop(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()
    server.server_close()
    return 0
