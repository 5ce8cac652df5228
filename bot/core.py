"""The message path: dedupe -> allow/limit -> lock -> map -> send -> recover -> keep.

Adapters call :meth:`Core.handle` with a parsed :class:`~bot.types.Incoming`
and get an :class:`~bot.types.Answer`, ``None`` (nothing to say: a duplicate
delivery, an empty message, a silent refusal), or a
:class:`~bot.types.BotError` whose ``user_message`` they show as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping

from redis.exceptions import RedisError

from bot.assistants.base import Assistant, ContextOverflow, Sent, ThreadGone
from bot.config import Settings
from bot.locks import KeyedLocks
from bot.metrics import Metrics
from bot.store import Begun, Store, Turn
from bot.text import clean_input
from bot.types import (
    Answer,
    BotError,
    BudgetExceeded,
    DeltaCallback,
    ForgetResult,
    Incoming,
    Misconfigured,
    NotAllowed,
    RateLimited,
    ThreadKey,
    TooLong,
    Unavailable,
)

log = logging.getLogger("threadkeeper.core")

ROLLOVER_TURNS = 6
"""Items re-primed into a thread that replaces one that outgrew the context window."""


def _is_dm(key: ThreadKey, channel: str) -> bool:
    """DMs pass channel allowlists (the workspace allowlist still applies).

    Discord DMs have the workspace ``dm``; Slack DM channel ids start with ``D``.
    """
    return key.workspace == "dm" or (key.platform == "slack" and channel.startswith("D"))


class Policy:
    """Allowlists: where the bot may answer at all."""

    def __init__(self, settings: Settings) -> None:
        self.workspaces = {"slack": settings.allowed_slack_teams, "discord": settings.allowed_discord_guilds}
        self.channels = {"slack": settings.allowed_slack_channels, "discord": settings.allowed_discord_channels}

    def allows(self, key: ThreadKey) -> bool:
        workspaces = self.workspaces.get(key.platform)
        if workspaces and key.workspace != "dm" and key.workspace not in workspaces:
            return False
        channels = self.channels.get(key.platform)
        channel = key.channel.split("/", 1)[0]
        return not (channels and not _is_dm(key, channel) and channel not in channels)


class Core:
    def __init__(
        self,
        store: Store,
        assistant: Assistant,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        others: Mapping[str, Assistant] | None = None,
    ) -> None:
        self.store = store
        self.assistant = assistant
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.policy = Policy(settings)
        self.others = dict(others or {})
        """Backends other than the active one, to delete threads an earlier setting made."""
        self._locks = KeyedLocks()
        # Longest a message waits for another worker's answer on the same thread: two sends with
        # every SDK retry (a recovery), plus slack.
        self._lock_wait = 2 * settings.openai_timeout * (settings.openai_max_retries + 1) + 60
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.closing = False

    # -- public API ------------------------------------------------------------------
    async def handle(self, msg: Incoming, on_delta: DeltaCallback | None = None) -> Answer | None:
        text = clean_input(msg.text)
        if not text:
            return None
        if not self.policy.allows(msg.key):
            if msg.direct:
                raise NotAllowed(f"not allowed here: {msg.key.digest}")
            return None
        if len(text) > self.settings.max_input_chars:
            raise TooLong(
                f"{len(text)} chars",
                f"That message is too long ({len(text):,} characters); the limit is "
                f"{self.settings.max_input_chars:,}. Please shorten it.",
            )
        if self.closing:
            raise Unavailable("shutting down", "I'm restarting right now. Please send that again in a moment.")
        async with self._tracked(), self._locks.hold(msg.key.id):
            try:
                return await self._locked_handle(msg, text, on_delta)
            except _Silent:
                return None
            except BotError as exc:
                self.metrics.errors.labels(type(exc).__name__).inc()
                raise
            except RedisError as exc:
                self.metrics.errors.labels("Redis").inc()
                log.error("redis unavailable: %s", exc)
                raise Unavailable(f"redis: {exc}") from None

    async def forget(self, key: ThreadKey) -> ForgetResult:
        """Delete the remote thread, then everything kept locally. Idempotent."""
        try:
            async with self._locks.hold(key.id), self._redis_lock(key):
                record = await self.store.get_thread(key)
                pending = 0
                if record and record.thread_id:
                    pending = await self._delete_remote(record.thread_id, record.backend or self.assistant.name, key)
                await self.store.delete_local(key)
        except RedisError as exc:
            log.error("redis unavailable during forget: %s", exc)
            raise Unavailable(f"redis: {exc}") from None
        self.metrics.forgets.inc()
        log.info("forgot thread of %s (remote deletion %s)", key.digest, "queued" if pending else "done")
        return ForgetResult(threads=1 if record else 0, remote_pending=pending)

    async def forget_user(self, platform: str, workspace: str, user: str) -> ForgetResult:
        """Erase every thread of one user in one workspace (``/forget all``)."""
        return await self._forget_many(await self._user_keys(ThreadKey(platform, workspace, "-", user)))

    async def forget_channel(self, key: ThreadKey) -> ForgetResult:
        """``/forget`` in a channel: the caller's conversation there and those in its platform threads
        (keys whose channel is ``<channel>/<thread>``), which a slash command cannot name."""
        below = key.channel + "/"
        keys = [k for k in await self._user_keys(key) if k.channel.startswith(below)]
        return await self._forget_many([key, *keys])

    async def _user_keys(self, key: ThreadKey) -> list[ThreadKey]:
        try:
            return await self.store.user_keys(key.user_id)
        except RedisError as exc:
            raise Unavailable(f"redis: {exc}") from None

    async def _forget_many(self, keys: list[ThreadKey]) -> ForgetResult:
        threads = pending = 0
        for key in keys:
            result = await self.forget(key)
            threads += result.threads
            pending += result.remote_pending
        return ForgetResult(threads, pending)

    async def drain(self, grace: float) -> bool:
        """Stop taking messages and wait up to ``grace`` seconds for answers in flight. True if all finished."""
        self.closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
            return True
        except TimeoutError:
            return False

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # -- the locked part ---------------------------------------------------------------
    async def _locked_handle(self, msg: Incoming, text: str, on_delta: DeltaCallback | None) -> Answer | None:
        key, token = msg.key, uuid.uuid4().hex
        begun = await self._begin(key, msg.message_id, token)
        if begun.status == "dup":
            self.metrics.duplicates.inc()
            log.info("duplicate delivery %s dropped", msg.message_id)
            return None
        renewer = asyncio.create_task(self._renew(key, msg.message_id, token))
        try:
            begun = await self._wait_for_lock(key, token, begun)
            await self._admit(key)
            answer = await self._answer(key, text, begun.thread_id, begun.backend, on_delta)
            turns: list[Turn] = [{"role": "user", "text": text}, {"role": "assistant", "text": answer.text}]
            renewer.cancel()
            try:
                recorded = await self.store.finish(
                    key,
                    msg.message_id,
                    token,
                    answer.thread_id,
                    self.assistant.name,
                    turns,
                    answer.usage.input_tokens,
                    answer.usage.output_tokens,
                )
                if not recorded:
                    log.warning("answered %s after its lock lapsed; this turn was not recorded", key.digest)
            except RedisError as exc:
                # The user still gets the answer; only this turn's bookkeeping is lost.
                log.warning("answered %s but could not record the turn: %s", key.digest, exc)
                with contextlib.suppress(RedisError):
                    await asyncio.shield(self.store.release(key, msg.message_id, token, "done"))
            self.metrics.messages.labels(key.platform).inc()
            return answer
        except BaseException as exc:
            renewer.cancel()
            # "done": the user was told something, so a redelivery must stay silent;
            # "drop": cancelled before saying anything, so a redelivery may try again.
            mode = "drop" if isinstance(exc, asyncio.CancelledError) else "done"
            with contextlib.suppress(RedisError):
                await asyncio.shield(self.store.release(key, msg.message_id, token, mode))  # type: ignore[arg-type]
            raise
        finally:
            # wait() rather than await: a cancel of this task must not be swallowed here.
            await asyncio.wait({renewer})

    async def _admit(self, key: ThreadKey) -> None:
        rate, budget = self.settings.rate, self.settings.user_daily_tokens
        if not rate and not budget:
            return
        verdict, what = await self.store.admit(key, rate, budget)
        if verdict == "notify":
            raise (RateLimited if what == "rate" else BudgetExceeded)(f"{what} limit for {key.digest}")
        if verdict == "silent":
            raise _Silent()

    async def _answer(
        self, key: ThreadKey, text: str, thread_id: str, backend: str, on_delta: DeltaCallback | None
    ) -> Answer:
        name = self.assistant.name
        if thread_id and backend != name:
            # save_thread() queues the other backend's thread for deletion by the janitor.
            log.info("thread of %s belongs to backend %r; starting a new one on %r", key.digest, backend, name)
            thread_id = ""
        fresh = not thread_id
        if fresh:
            thread_id = await self._create(key, [])
        try:
            sent = await self._send(thread_id, text, key, on_delta)
            return Answer(sent.text, thread_id, usage=sent.usage)
        except Misconfigured:
            if fresh:
                await self._discard(key, thread_id)
            raise
        except ThreadGone:
            reason, seed = "gone", await self.store.turns(key)
        except ContextOverflow:
            reason, seed = "context", await self._rollover_seed(key)
        old = thread_id
        thread_id = await self._create(key, seed)
        self.metrics.recoveries.labels(reason).inc()
        if reason == "context":
            log.info("thread %s outgrew the context window; rolled over to %s (%s)", old, thread_id, key.digest)
            await self._delete_remote(old, name, key)
        else:
            log.info(
                "thread %s is gone; recovered as %s with %d kept turns (%s)", old, thread_id, len(seed), key.digest
            )
        try:
            sent = await self._send(thread_id, text, key, on_delta)
        except ThreadGone:
            raise Unavailable(f"new thread {thread_id} vanished at once") from None
        except ContextOverflow:
            raise TooLong("message alone exceeds the context window") from None
        return Answer(sent.text, thread_id, recovered=True, usage=sent.usage)

    async def _create(self, key: ThreadKey, seed: list[Turn]) -> str:
        thread_id = await self.assistant.create_thread(key, seed)
        await self.store.save_thread(key, thread_id, self.assistant.name)
        return thread_id

    async def _send(self, thread_id: str, text: str, key: ThreadKey, on_delta: DeltaCallback | None) -> Sent:
        started = time.perf_counter()
        try:
            sent = await self.assistant.send(thread_id, text, key=key, on_delta=on_delta)
        finally:
            self.metrics.latency.observe(time.perf_counter() - started)
        usage = sent.usage
        self.metrics.tokens.labels("input").inc(usage.input_tokens)
        self.metrics.tokens.labels("output").inc(usage.output_tokens)
        self.metrics.tokens.labels("cached").inc(usage.cached_tokens)
        return sent

    async def _rollover_seed(self, key: ThreadKey) -> list[Turn]:
        kept = await self.store.turns(key)
        recent = kept[-ROLLOVER_TURNS:]
        if not self.settings.context_summary:
            return recent
        try:
            summary = await self.assistant.summarize(kept)
        except (BotError, ContextOverflow) as exc:
            log.warning("summary for roll-over failed (%s); re-priming with recent turns only", exc)
            return recent
        return [{"role": "assistant", "text": f"(Summary of our earlier conversation: {summary})"}, *recent]

    async def _discard(self, key: ThreadKey, thread_id: str) -> None:
        """Undo a thread made for a message that could not be answered at all."""
        with contextlib.suppress(Exception):
            await self.assistant.delete_thread(thread_id)
            await self.store.delete_local(key, thread_id)

    async def _delete_remote(self, thread_id: str, backend: str, key: ThreadKey | None) -> int:
        """Delete a remote thread; on failure queue it for the janitor. Returns 1 if queued."""
        assistant = self.assistant if backend == self.assistant.name else self.others.get(backend)
        await self.store.add_tombstone(thread_id, backend, key)
        if assistant is None:
            log.warning("no %r backend configured; remote thread %s queued for deletion", backend, thread_id)
            return 1
        try:
            await assistant.delete_thread(thread_id)
        except Exception as exc:
            log.warning("remote deletion of %s failed (%s); queued for the janitor", thread_id, exc)
            return 1
        await self.store.remove_tombstone(thread_id)
        return 0

    async def _renew(self, key: ThreadKey, message_id: str | None, token: str) -> None:
        interval = self.settings.lock_ttl / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.store.renew(key, message_id, token)
            except RedisError as exc:
                log.warning("could not renew the lock of %s: %s", key.digest, exc)

    @contextlib.asynccontextmanager
    async def _tracked(self) -> AsyncIterator[None]:
        self._in_flight += 1
        self._idle.clear()
        self.metrics.in_flight.inc()
        try:
            yield
        finally:
            self._in_flight -= 1
            self.metrics.in_flight.dec()
            if self._in_flight == 0:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def _redis_lock(self, key: ThreadKey) -> AsyncIterator[None]:
        """The thread's Redis lock for work outside the message path (forget)."""
        token = uuid.uuid4().hex
        await self._wait_for_lock(key, token, await self._begin(key, None, token))
        renewer = asyncio.create_task(self._renew(key, None, token))
        try:
            yield
        finally:
            renewer.cancel()
            await asyncio.wait({renewer})
            with contextlib.suppress(RedisError):
                await asyncio.shield(self.store.release(key, None, token, "keep"))

    async def _begin(self, key: ThreadKey, message_id: str | None, token: str) -> Begun:
        """``store.begin``, giving back what it may have taken if we are cancelled meanwhile."""
        try:
            return await self.store.begin(key, message_id, token)
        except asyncio.CancelledError:
            with contextlib.suppress(RedisError):
                await asyncio.shield(self.store.release(key, message_id, token, "drop"))
            raise

    async def _wait_for_lock(self, key: ThreadKey, token: str, begun: Begun) -> Begun:
        """Poll, with backoff, until another worker's lock on this thread is gone; then it is ours."""
        deadline = time.monotonic() + self._lock_wait
        delay = 0.02
        while begun.status == "busy":
            if time.monotonic() > deadline:
                raise Unavailable("thread lock wait timed out")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            begun = await self._begin(key, None, token)
        return begun


class _Silent(BotError):
    """Over a limit and already told: say nothing."""
