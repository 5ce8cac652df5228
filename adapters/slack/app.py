"""The Slack adapter: slack-bolt's ``AsyncApp`` in Socket Mode or behind an aiohttp server.

``python -m bot slack`` calls :func:`run`. Socket Mode when ``SLACK_APP_TOKEN`` is set; otherwise
HTTP on ``PORT`` with events, commands and interactivity at ``/slack/events`` (Bolt verifies the
signing secret) and ``/healthz`` (served in Socket Mode too). With ``SLACK_CLIENT_ID``, any number of workspaces
install the app (:mod:`adapters.slack.oauth`); each event is answered with its workspace's ``context.client``.

Every event is acknowledged at once: the listeners only parse and start a task of this adapter's
own (so shutdown can wait for it), and the answer is worked out there, never inside the ack. Duplicate
deliveries (Slack retries with ``X-Slack-Retry-Num``) are the core's business: it dedupes on the
message id we pass (``<channel>:<ts>`` in channels, so a mention that also arrives as ``message.channels`` is
answered once; the ``event_id`` in DMs), even while the first delivery is still being answered, and
it still answers a genuine retry after a crash. So retries are *not* dropped here.

In channels the bot follows the threads it answered in: a later message there is answered without a mention
(``SLACK_FOLLOW_UPS``), after the core confirms the bot is in that thread; any other message is dropped
without a Slack call. When a message in a thread is answered, the core reads what was written there since the
bot's last turn (:mod:`adapters.slack.context`).

The adapter parses (:mod:`adapters.slack.parse`) and renders (:mod:`adapters.slack.reply`); the
kit (:mod:`adapters.kit`) runs the answer, tracks the tasks and words the replies. Every Slack call
is paced under Slack's rate limits and retried after ``Retry-After`` (:mod:`adapters.slack.limits`),
through lanes shared by every worker of the workspace (``runtime.pacer``). It never touches Redis or
OpenAI itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Coroutine
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.context.say.async_say import AsyncSay
from slack_bolt.context.set_suggested_prompts.async_set_suggested_prompts import AsyncSetSuggestedPrompts
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.kit.files import FileRef, deliver_with_files
from adapters.kit.pacing import LocalLanes, Pacer
from adapters.kit.tasks import InFlight, event_loop_name, run_until_stopped
from adapters.kit.texts import SLACK_FORGET, forget_text, memory_text, user_sentence
from adapters.slack.agent import SLACK_AGENT_EVENTS, SUGGESTED_PROMPTS, SlackAgent
from adapters.slack.approvals import SlackApprovals
from adapters.slack.auth import OneAuthTest
from adapters.slack.context import SlackContext
from adapters.slack.feedback import SlackFeedback, feedback_blocks
from adapters.slack.files import file_refs, slack_fetcher
from adapters.slack.limits import DELIVER_WITHIN, DELIVERY_ERRORS, SEND_ERRORS, SlackCalls, answer_privately
from adapters.slack.oauth import SLACK_LIFECYCLE_EVENTS, serve_install_pages, slack_access
from adapters.slack.parse import ForgetRequest, Parsed, parse_event, parse_forget
from adapters.slack.reply import SlackReply, StreamSupport
from bot.config import ConfigError, Settings
from bot.domain import ForgetResult, ThreadKey
from bot.runtime import Runtime

log = logging.getLogger("threadkeeper.slack")

SLACK_EVENTS: dict[str, str] = {"app_mention": "app_mention", "message.im": "message", "message.channels": "message",
                                "message.groups": "message", "message.mpim": "message"}
"""Bot events the adapter answers: manifest subscription name -> Bolt event type (``message.channels``,
``.groups`` and ``.mpim`` carry the follow-ups in threads the bot answered in)."""

SLACK_ASSISTANT_EVENTS: tuple[str, ...] = ("assistant_thread_started", "assistant_thread_context_changed")
"""AI-app pane events, handled through Bolt's ``AsyncAssistant`` middleware; the context change by our own
listener (:mod:`adapters.slack.agent`: Bolt's default would make Slack calls inside the ack). The agent
experience's events are :data:`~adapters.slack.agent.SLACK_AGENT_EVENTS`."""

SLACK_COMMANDS: tuple[str, ...] = ("/forget", "/memory")

SLACK_BOT_SCOPES: tuple[str, ...] = ("app_mentions:read", "assistant:write", "channels:history", "chat:write",
                                     "commands", "files:read", "groups:history", "im:history", "mpim:history",
                                     "users:read")
"""What the handlers above need (``*:history``: follow-ups and reading a thread; ``users:read``: speakers' names);
``slack-manifest.yml`` must ask for exactly these."""

FORGET_USAGE = "Use `/forget` to forget our conversation here, or `/forget all` for all of them."

BOLT_LOGGER = "threadkeeper.slack.bolt"
"""The Bolt app's name, which is also the logger it re-levels to the root's level on every request: a leaf
of our own, so the ``threadkeeper`` loggers keep the levels the operator (or a test) gave them."""

HOST = "0.0.0.0"
"""Listen on every interface: the usual need inside a container."""


class SlackAdapter:
    """The Bolt app, its transport (HTTP or Socket Mode) and the answers in flight."""

    def __init__(self, runtime: Runtime, *, update_interval: float = 1.0, host: str = HOST,
                 deliver_within: float = DELIVER_WITHIN) -> None:
        settings = runtime.settings
        self.settings: Settings = settings
        self.core = runtime.core
        self.update_interval = update_interval
        self.host = host
        if settings.slack_bot_token is None and not settings.slack_oauth:
            raise ConfigError("SLACK_BOT_TOKEN is required for the Slack bot but is not set (or SLACK_CLIENT_ID and "
                              "SLACK_CLIENT_SECRET for many workspaces)")
        self.app_token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else None
        if self.app_token is None and settings.slack_signing_secret is None:
            raise ConfigError("SLACK_SIGNING_SECRET is required in HTTP mode (or set SLACK_APP_TOKEN for Socket Mode)")
        self.mode = "socket" if self.app_token else "http"
        base_url = settings.slack_api_url or AsyncWebClient.BASE_URL
        self.client = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None,
            base_url=base_url if base_url.endswith("/") else base_url + "/",
        )
        """Each request's ``context.client`` is made from it (session, retries) with that workspace's token."""
        secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
        self.access = slack_access(settings, runtime.installations, self.client, self._learn, SLACK_BOT_SCOPES)
        """Bolt's authorization: start()'s one ``auth.test``, or with OAuth each workspace's installation."""
        # process_before_response: the listeners below only parse and start a task, so running them
        # before the ack costs nothing, and "acknowledged" then means "the work has started".
        self.app = AsyncApp(client=self.client, signing_secret=secret, name=BOLT_LOGGER, process_before_response=True,
                            authorize=self.access.authorize, oauth_settings=self.access.oauth,
                            request_verification_enabled=self.mode == "http")
        self.calls = SlackCalls(Pacer(runtime.pacer or LocalLanes()), metrics=runtime.metrics,
                                deliver_within=deliver_within)
        """Paced, retried calls (the client's retry handlers are theirs: no blind re-post of a message)."""
        self.calls.install(self.client)
        self.context = SlackContext(self.calls, limit=settings.thread_context_messages)
        """Reads the thread a message is in, and people's names (:mod:`adapters.slack.context`)."""
        self.streams = StreamSupport()
        self.registered_events: set[str] = set()
        self.registered_commands: set[str] = set()
        self.events_received = 0
        """Events that reached a listener (answered or ignored there)."""
        self.in_flight = InFlight(log)
        """Answers, greetings and /forget replies started by the listeners."""
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.socket: AsyncSocketModeHandler | None = None
        self._taking_events = True
        self._register()

    # ---- registration ------------------------------------------------------------------------
    def _register(self) -> None:
        # Messages first: Bolt tries each listener's matchers in order and runs the first that matches, so the
        # events that carry nearly all the traffic are matched without testing the rarer ones before them.
        for event_type in dict.fromkeys(SLACK_EVENTS.values()):
            self.app.event(event_type)(self._on_event)
        self.registered_events.update(SLACK_EVENTS)
        assistant = AsyncAssistant(logger=log)
        assistant.thread_started(self._on_thread_started)
        assistant.user_message(self._on_event)
        self.agent = SlackAgent(self.core, self.calls, self.in_flight, self.context, self.settings)
        self.agent.register(self.app, assistant)  # prompts, titles, the channel the user looks at
        self.app.use(assistant)
        self.registered_events.update(SLACK_ASSISTANT_EVENTS, SLACK_AGENT_EVENTS)
        self.feedback = SlackFeedback(self.core, self.calls, self.in_flight)
        self.feedback.register(self.app)  # clicks on the buttons under answers (block_actions)
        self.access.register(self.app, self.core, self.in_flight, self.context)  # uninstalls, refused requests
        self.registered_events.update(SLACK_LIFECYCLE_EVENTS)
        self.approvals = SlackApprovals(self.core, self.calls, self.in_flight)
        self.approvals.register(self.app)  # Approve / Decline on tool calls that need it (block_actions)
        self.app.command("/forget")(self._on_forget)
        self.app.command("/memory")(self._on_memory)
        self.registered_commands.update(("/forget", "/memory"))

    # ---- listeners (they run before the ack, so they only parse and start a task) ---------------
    async def _on_event(self, body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest) -> None:
        parsed = parse_event(body, context.bot_user_id, self.settings.thread_scope,
                             follow_ups=self.settings.slack_follow_ups, agent_view=self.settings.slack_agent_view)
        if parsed is None:
            log.debug("ignored %s event %s", (body.get("event") or {}).get("type"), body.get("event_id"))
        else:
            retry = request.headers.get("x-slack-retry-num", [])
            retried = bool(retry and retry[0] not in ("", "0"))
            parsed = self.agent.on_message(parsed, context.client, retried=retried)  # title, "this channel"
            self.in_flight.spawn(self._answer(parsed, context.client, retried=retried, files=file_refs(body)))
        self.events_received += 1

    async def _on_thread_started(self, say: AsyncSay, set_suggested_prompts: AsyncSetSuggestedPrompts,
                                 body: dict[str, Any]) -> None:
        thread = (body.get("event") or {}).get("assistant_thread") or {}
        self.agent.thread_started(body)
        key = ThreadKey("slack", str(body.get("team_id") or ""), str(thread.get("channel_id") or ""),
                        str(thread.get("user_id") or ""))
        prompts = [{"title": p.title, "message": p.message}
                   for p in self.core.profiles.profiles.resolve(key).suggested_prompts]  # PROFILES_FILE's, if any
        self.in_flight.spawn(self._greet(say, set_suggested_prompts, prompts or SUGGESTED_PROMPTS))

    async def _greet(self, say: AsyncSay, set_suggested_prompts: AsyncSetSuggestedPrompts,
                     prompts: list[dict[str, str]]) -> None:
        try:
            await say("Hi! Ask me anything. Each conversation here keeps its own memory.")
            await set_suggested_prompts(prompts=prompts)
        except SEND_ERRORS as exc:
            log.warning("could not greet a new assistant thread: %s", exc)

    async def _on_forget(self, ack: Any, body: dict[str, Any], respond: AsyncRespond | None,
                         context: AsyncBoltContext) -> None:
        await ack()
        self.in_flight.spawn(self._forget(body, respond, context.client))

    async def _on_memory(self, ack: Any, body: dict[str, Any], respond: AsyncRespond | None,
                         context: AsyncBoltContext) -> None:
        await ack()
        self.in_flight.spawn(self._memory(body, respond, context.client))

    # ---- the work ------------------------------------------------------------------------------
    async def _answer(self, parsed: Parsed, client: AsyncWebClient, *, retried: bool,
                      files: tuple[FileRef, ...] = ()) -> None:
        """Answer with ``client``: the token of the event's workspace."""
        incoming = parsed.incoming
        if parsed.follow_up and not await self.core.shared.joined(incoming.place):
            return  # a thread the bot was never called into: not read, not answered
        if parsed.source is not None:
            gather = self.context.gather_for(parsed.source, incoming.key.digest, speaker=incoming.key.shared,
                                             client=client)
            incoming = dataclasses.replace(incoming, gather=gather)
        ask = self.approvals.prompter(parsed.target, incoming.key.digest, client)
        incoming = dataclasses.replace(incoming, ask=ask)
        reply = SlackReply(
            client,
            parsed.target,
            streams=self.streams,
            calls=self.calls,
            digest=parsed.incoming.key.digest,
            interval=self.update_interval,
            # A retry may race the first delivery's answer: never touch the status it shows.
            show_status=parsed.target.is_dm and not retried,
            loading=self.agent.loading(parsed, retried=retried),  # channel threads, under agent_view
            final_blocks=functools.partial(feedback_blocks, parsed.incoming.key.digest),
        )
        fetch = slack_fetcher(self.settings, client.token or "").fetch  # the workspace's token, to Slack's hosts only
        await deliver_with_files(self.core, incoming, files, fetch, reply, log)

    async def _forget(self, body: dict[str, Any], respond: AsyncRespond | None, client: AsyncWebClient) -> None:
        scope = self.settings.thread_scope
        request = parse_forget(body, scope)
        try:
            if request is None:
                text = FORGET_USAGE
            else:
                result = await self._do_forget(request)
                text = forget_text(SLACK_FORGET, result, everything=request.everything)
                await self._say_reset(request, result.reset, client)
        except Exception as exc:
            text = user_sentence(exc, log, "/forget")
        await self._reply_privately(body, respond, text, "/forget", client)

    async def _reply_privately(self, body: dict[str, Any], respond: AsyncRespond | None, text: str,
                               command: str, client: AsyncWebClient) -> None:
        """A slash command's answer only its caller sees: through response_url, else an ephemeral post."""
        await answer_privately(self.calls, client, text, team=str(body.get("team_id") or ""),
                               channel=str(body.get("channel_id")), user=str(body.get("user_id")),
                               response_url=respond.response_url if respond is not None else None, kind=command,
                               failed=f"could not answer {command}", level=logging.ERROR)

    async def _memory(self, body: dict[str, Any], respond: AsyncRespond | None, client: AsyncWebClient) -> None:
        """``/memory``: what the bot remembers of the conversation where it is typed, privately."""
        request = parse_forget({**body, "text": ""}, self.settings.thread_scope)
        try:
            text = memory_text(*await self.core.memory_of(request.key)) if request else FORGET_USAGE
        except Exception as exc:
            text = user_sentence(exc, log, "/memory")
        await self._reply_privately(body, respond, text, "/memory", client)

    async def _say_reset(self, request: ForgetRequest, reset: tuple[str, ...], client: AsyncWebClient) -> None:
        """One visible line in each shared conversation ``/forget`` reset, naming who reset it."""
        if not reset:
            return
        name = await self.context.name(request.team, request.user, client)
        text = f"{name} reset this conversation: my next answer here starts fresh."
        delivery = self.calls.delivery(request.team, "/forget")
        for where in reset:
            channel, _, root = where.partition("/")

            def post(channel: str = channel, root: str = root) -> Awaitable[AsyncSlackResponse]:
                return client.chat_postMessage(channel=channel, thread_ts=root or None, text=text)

            try:
                await self.calls.urgent(delivery, "chat.postMessage", post, channel=channel)
            except DELIVERY_ERRORS as exc:
                log.warning("could not say in a reset conversation that it was reset: %s", exc)

    async def _do_forget(self, request: ForgetRequest) -> ForgetResult:
        if request.everything:
            return await self.core.forget_user("slack", request.team, request.user)
        return await self.core.forget_channel(request.key)

    async def settle(self, within: float = 10.0) -> None:
        """Wait until every answer and /forget started so far is done (tests, probes)."""
        await self.in_flight.settle(within)

    # ---- transport -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Check the tokens (one-line :class:`ConfigError` if Slack refuses), then serve and connect."""
        if self.client.session is None:  # one connection pool for every Web API call (else one per call)
            self.client.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        if isinstance(self.access.auth, OneAuthTest):  # one workspace: its token is checked before serving
            identity = await self._check("SLACK_BOT_TOKEN", self.client.auth_test())
            self.access.auth.remember(identity)
            self.calls.team = str(identity.get("team_id") or self.calls.team)
            self._learn(identity)
        wss_url = None
        if self.app_token is not None:
            opened = await self._check("SLACK_APP_TOKEN", self.client.apps_connections_open(app_token=self.app_token))
            wss_url = str(opened["url"])
        web_app = web.Application()
        web_app.router.add_get("/healthz", self._healthz)
        if self.mode == "http":
            web_app.router.add_post("/slack/events", self._http_events)
        if self.app.oauth_flow is not None:
            serve_install_pages(web_app, self.app.oauth_flow)
        self._runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.settings.port)
        await site.start()
        self._site = site
        if self.app_token is not None:
            self.socket = AsyncSocketModeHandler(self.app, app_token=self.app_token, web_client=self.client)
            self.socket.client.wss_uri = wss_url  # the URL just checked: no second apps.connections.open
            await self.socket.connect_async()  # type: ignore[no-untyped-call]
        log.info("Slack adapter running (%s mode, port %d, %s loop)", self.mode, self.settings.port,
                 event_loop_name())

    def _learn(self, identity: AsyncSlackResponse) -> None:
        """The bot's own ids in a workspace (``auth.test``): its messages there are not read as context."""
        self.context.identify(str(identity.get("user_id") or ""), str(identity.get("bot_id") or ""),
                              str(identity.get("user") or ""))

    async def _check(self, name: str, call: Coroutine[Any, Any, AsyncSlackResponse]) -> AsyncSlackResponse:
        try:
            return await call
        except SlackApiError as exc:
            raise ConfigError(f"{name} was refused by Slack: {exc.response.get('error')}") from None
        except SEND_ERRORS as exc:
            url = self.client.base_url
            raise ConfigError(f"SLACK_API_URL: cannot reach the Slack Web API at {url}: {exc}") from None

    async def stop(self, grace: float) -> None:
        """:meth:`drain`, then :meth:`close`."""
        try:
            await self.drain(grace)
        finally:
            await self.close()

    async def drain(self, grace: float) -> None:
        """Stop taking events, then let answers in flight finish within ``grace`` (the late ones are cancelled)."""
        deadline = time.monotonic() + grace
        await self._stop_intake()
        if not await self.core.drain(grace):
            log.warning("shutdown: answers still in flight after %.0f s", grace)
        await self.in_flight.wait(max(0.1, deadline - time.monotonic()))

    async def close(self) -> None:
        """Close the connections: Socket Mode and the HTTP server (``/healthz`` until now)."""
        await self._stop_intake()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None
        session, self.client.session = self.client.session, None
        if session is not None:
            await session.close()

    async def _stop_intake(self) -> None:
        """No new events: close Socket Mode, stop listening for HTTP events (``/healthz`` stays in Socket Mode)."""
        if not self._taking_events:
            return
        self._taking_events = False
        if self.socket is not None:
            await self.socket.close_async()  # type: ignore[no-untyped-call]
        if self._site is not None and self.mode == "http":
            await self._site.stop()

    async def _http_events(self, request: web.Request) -> web.Response:
        bolt_response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def _healthz(self, _request: web.Request) -> web.Response:
        """The core's health, and in Socket Mode whether the socket is connected."""
        healthy, details = self.core.health()
        connected = self.socket is None or await self.socket.client.is_connected()
        ok = healthy and connected
        return web.json_response({**details, "ok": ok, "mode": self.mode}, status=200 if ok else 503)


async def run(runtime: Runtime, *, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set), then drain and disconnect cleanly."""
    adapter = SlackAdapter(runtime)
    grace = runtime.settings.shutdown_grace

    async def drain() -> None:
        log.info("Slack adapter stopping: draining answers in flight")
        await adapter.drain(grace)

    await run_until_stopped(adapter.start, drain, adapter.close, stop=stop)
    log.info("Slack adapter stopped")
