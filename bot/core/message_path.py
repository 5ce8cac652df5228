"""The message path: dedupe -> allow/limit -> lock -> map -> send -> recover -> keep.

Adapters call :meth:`Core.handle` with a parsed :class:`~bot.domain.Incoming`
and get an :class:`~bot.domain.Answer`, ``None`` (nothing to say: a duplicate
delivery, an empty message, a silent refusal), or a
:class:`~bot.errors.BotError` whose ``user_message`` they show as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from collections.abc import Mapping as MappingOf
from dataclasses import replace

from bot.assistants.base import Assistant, ContextOverflow, Sent, ThreadGone
from bot.assistants.errors import UnknownModel
from bot.assistants.render import kept_text
from bot.config import Settings
from bot.core.approvals import Approvals
from bot.core.deleter import Deleter
from bot.core.local_locks import KeyedLocks
from bot.core.memory import Memory, as_seed
from bot.core.policy import Policy
from bot.core.shared import SharedConversations
from bot.core.unrecorded import Unrecorded
from bot.core.workspaces import Erased, erase_workspace, resume_erasures
from bot.domain import Answer, Approve, DeltaCallback, ForgetResult, Incoming, StatusCallback, ThreadKey, Turn, UserTurn
from bot.errors import BotError, BudgetExceeded, Misconfigured, NotAllowed, RateLimited, TooLong, Unavailable
from bot.metrics import Metrics
from bot.profiles import LiveProfiles, load_profiles
from bot.safety import Safety, parse_patterns
from bot.store import Duplicate, FinishedTurn, LockBusy, Mapping, Store, StoreError, unavailable
from bot.text import clean_input

log = logging.getLogger("threadkeeper.core")

ROLLOVER_TURNS = 6
"""Items re-primed into a thread that replaces one that outgrew the context window."""
MODEL_RECHECK = 30.0
"""Seconds a wrong ``OPENAI_MODEL`` is answered without any assistant call before it is checked again."""


class Core:
    def __init__(
        self,
        store: Store,
        assistant: Assistant,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        others: MappingOf[str, Assistant] | None = None,
        profiles: LiveProfiles | None = None,
        safety: Safety | None = None,
    ) -> None:
        self.store = store
        self.assistant = assistant
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.policy = Policy(settings)
        self.profiles = profiles or LiveProfiles(settings, load_profiles(settings))
        self.safety = safety or Safety(patterns=parse_patterns(settings.redact_patterns), metrics=self.metrics)
        backends = {**dict(others or {}), assistant.name: assistant}
        self.deleter = Deleter(store, backends, assistant.name)
        """Deletes threads in one order; knows every configured backend, so threads an earlier setting made go too."""
        self.memory = Memory(store, assistant, settings, self.metrics)
        self._locks = KeyedLocks()
        self.shared = SharedConversations(store, self.deleter, settings, self._locks)
        """Context a turn brings along, who said what in shared conversations, and erasing one speaker."""
        self.approvals = Approvals(store, timeout=settings.tool_approval_timeout)
        """Tool calls the asker approves with a button (:mod:`bot.core.approvals`)."""
        # Longest a message waits for another worker's answer on the same thread: two sends with
        # every SDK retry (a recovery), the asker's approvals, plus slack.
        self.lock_wait = 2 * settings.openai_timeout * (settings.openai_max_retries + 1) + self.approvals.longest + 60
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.closing = False
        self._model_bad_until = 0.0
        self._model_check: asyncio.Future[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self.unrecorded = Unrecorded(assistant.delete_thread)
        """Remote threads made but never recorded (Redis failed in between): deleted by this process."""

    # -- public API ------------------------------------------------------------------
    async def handle(self, msg: Incoming, on_delta: DeltaCallback | None = None,
                     on_status: StatusCallback | None = None) -> Answer | None:
        text = clean_input(msg.text)
        if not text and not msg.attachments and not msg.context:
            return None
        if not self.policy.allows(msg):
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
                return await self._locked_handle(msg, text, on_delta, on_status)
            except (_Silent, Duplicate) as exc:
                if isinstance(exc, Duplicate):
                    self.metrics.duplicates.inc()
                    log.info("duplicate delivery %s dropped", msg.message_id)
                return None
            except LockBusy:
                self.metrics.errors.labels("Unavailable").inc()
                raise Unavailable("thread lock wait timed out") from None
            except BotError as exc:
                self.metrics.errors.labels(_kind(exc)).inc()
                raise
            except StoreError as exc:
                self.metrics.errors.labels("Redis").inc()
                log.error("redis unavailable: %s", exc)
                raise Unavailable(f"redis: {exc}") from None

    async def forget(self, key: ThreadKey) -> ForgetResult:
        """Delete the remote thread, then everything kept locally (:mod:`bot.core.deleter`). Idempotent."""
        try:
            async with self._locks.hold(key.id):
                threads, pending = await self.deleter.forget(key, wait=self.lock_wait)
        except LockBusy:
            raise Unavailable("thread lock wait timed out") from None
        except StoreError as exc:
            log.error("redis unavailable during forget: %s", exc)
            raise Unavailable(f"redis: {exc}") from None
        self.metrics.forgets.inc()
        log.info("forgot thread of %s (remote deletion %s)", key.digest, "queued" if pending else "done")
        return ForgetResult(threads=threads, remote_pending=pending)

    async def forget_user(self, platform: str, workspace: str, user: str) -> ForgetResult:
        """Erase every thread of one user in one workspace (``/forget all``)."""
        own = await self._forget_many(await self._user_keys(ThreadKey(platform, workspace, "-", user)))
        shared = await self.shared.erase(platform, workspace, user, wait=self.lock_wait)  # shared conversations
        return ForgetResult(own.threads + shared.threads, own.remote_pending + shared.remote_pending)

    async def erase_workspace(self, platform: str, workspace: str, installation: str | None) -> Erased:
        """Every thread of one workspace, then its installation (uninstalled, or ``threads forget-workspace``),
        durably: :mod:`bot.core.workspaces`. :class:`Unavailable` when Redis fails."""
        return await erase_workspace(self.store, self.forget, platform, workspace, installation)

    async def resume_erasures(self) -> int:
        """The janitor's part: finish workspace erasures a stopped process left (:mod:`bot.core.workspaces`)."""
        return await resume_erasures(self.store, self.forget)

    async def forget_channel(self, key: ThreadKey) -> ForgetResult:
        """``/forget`` in a channel: the caller's conversation there and those in its platform threads
        (keys whose channel is ``<channel>/<thread>``), which a slash command cannot name."""
        below = key.channel + "/"
        keys = [k for k in await self._user_keys(key) if k.channel.startswith(below)]
        return await self.shared.reset_here(key, await self._forget_many([key, *keys]), self.forget)

    async def drain(self, grace: float) -> bool:
        """Stop taking messages and wait up to ``grace`` seconds for answers in flight. True if all finished."""
        self.closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
            return True
        except TimeoutError:
            return False

    def warm_up(self) -> asyncio.Task[None] | None:
        """Check ``OPENAI_MODEL`` now, in the background, so the first new users after a start do not wait for
        the check (issue 19); one that fails here is made again before the first new conversation. The check's
        task (the same one when called again), or None when the model is known already."""
        if not self._model_known() and self._warming is None:
            self._warming = asyncio.create_task(self._warm(), name="check-model")
        return self._warming

    async def _warm(self) -> None:
        try:
            await self._check_model()
        except Exception as exc:  # checked again for the first new conversation, whose user is told
            log.warning("could not confirm OPENAI_MODEL at start: %s", exc)

    async def close(self) -> None:
        """Stop folding; one last try at threads made but never recorded (the log names what is left)."""
        checks = [t for t in (self._warming, self._model_check) if t is not None and not t.done()]
        for check in checks:  # a model check still out at shutdown: nobody waits for it any more
            check.cancel()
        await asyncio.gather(*checks, return_exceptions=True)
        await self.memory.close()
        await self.unrecorded.close()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def health(self) -> tuple[bool, dict[str, object]]:
        """Liveness for ``/healthz``: False once draining for shutdown, so a load balancer stops first."""
        ok = not self.closing
        return ok, {"ok": ok, "in_flight": self._in_flight, "backend": self.assistant.name}

    async def ready(self) -> tuple[bool, dict[str, object]]:
        """Readiness for ``/readyz``: :meth:`health`, and Redis answers a PING within 1 s (``"redis"``).

        Not ready while Redis is unreachable, so a load balancer sends no work that could only fail.
        """
        live, body = self.health()
        try:
            redis = await asyncio.wait_for(self.store.ping(), 1.0)
        except TimeoutError:
            redis = False
        ok = live and redis
        return ok, {**body, "ok": ok, "redis": redis}

    async def memory_of(self, key: ThreadKey) -> tuple[str, int]:
        """``/memory``: the thread's summary and how many kept items it has."""
        with unavailable():
            return await self.memory.show(key)

    async def get_flag(self, name: str) -> str | None:
        """A small shared value (adapters' command-set hashes and the like)."""
        with unavailable():
            return await self.store.get_flag(name)

    async def set_flag(self, name: str, value: str) -> None:
        with unavailable():
            await self.store.set_flag(name, value)

    # -- the locked part ---------------------------------------------------------------
    async def _locked_handle(self, msg: Incoming, text: str, on_delta: DeltaCallback | None,
                             on_status: StatusCallback | None) -> Answer:
        key = msg.key
        turn = UserTurn(text, speaker=msg.speaker, context=msg.context, attachments=msg.attachments)
        async with self.store.lock(key, claim=msg.message_id, wait=self.lock_wait) as lock:
            await self._admit(self.shared.payer(msg))
            prepared = await self.shared.prepare(msg, turn, lock.mapping.mark)
            turn = self.safety.redact(prepared.turn)  # once, with the context gathered just now
            if (flagged := await self.safety.screen_input(key, turn)) is not None:
                return Answer(flagged, lock.mapping.thread_id)  # no assistant call, nothing kept
            held = None if self.safety.holds_answers else on_delta  # MODERATION=both: checked before shown
            answer = await self._answer(key, turn, lock.mapping, held, on_status, self.approvals.approver(msg))
            if (flagged := await self.safety.screen_answer(key, answer.text)) is not None:
                answer = Answer(flagged, answer.thread_id, answer.recovered, answer.usage, answer.items)
            turns = self.shared.kept(msg, turn, kept_text(turn), answer.text)
            usage = answer.usage
            try:
                finished = FinishedTurn(answer.thread_id, self.assistant.name, turns, usage.input_tokens,
                                        usage.output_tokens, fold=self.memory.enabled,
                                        shared=self.shared.record(msg, prepared, answer))
                recorded = await lock.finish(finished)
                if not recorded:
                    log.warning("answered %s after its lock lapsed; this turn was not recorded", key.digest)
                self.memory.after_answer(key, recorded)
            except StoreError as exc:
                # The user still gets the answer; only this turn's bookkeeping is lost.
                log.warning("answered %s but could not record the turn: %s", key.digest, exc)
                await lock.release("done")
        self.metrics.messages.labels(key.platform).inc()
        return answer

    async def _admit(self, key: ThreadKey) -> None:
        rate, budget = self.settings.rate, self.settings.user_daily_tokens
        if not rate and not budget:
            return
        verdict, what = await self.store.admit(key, rate, budget)
        if verdict == "notify":
            raise (RateLimited if what == "rate" else BudgetExceeded)(f"{what} limit for {key.digest}")
        if verdict == "silent":
            raise _Silent()

    async def _answer(self, key: ThreadKey, turn: UserTurn, mapping: Mapping, on_delta: DeltaCallback | None,
                      on_status: StatusCallback | None = None, approve: Approve | None = None) -> Answer:
        name = self.assistant.name
        thread_id, backend = mapping.thread_id, mapping.backend
        if mapping.summary and self.memory.enabled:
            turn = replace(turn, memory=mapping.summary)
        if thread_id and backend != name:
            # save_thread() queues the other backend's thread for deletion by the janitor.
            log.info("thread of %s belongs to backend %r; starting a new one on %r", key.digest, backend, name)
            thread_id = ""
        if time.monotonic() < self._model_bad_until:
            raise UnknownModel("OPENAI_MODEL is still unknown to the server; not asking again yet")
        fresh = not thread_id
        if fresh:
            await self._check_model()
            thread_id = await self._create(key, [])
        try:
            sent = await self._send(thread_id, turn, key, on_delta, on_status, approve)
            return Answer(sent.text, thread_id, usage=sent.usage, items=sent.items)
        except Misconfigured as exc:
            if isinstance(exc, UnknownModel):
                self._model_bad_until = time.monotonic() + MODEL_RECHECK
            if fresh:
                await self._discard(key, thread_id)
            raise
        except ThreadGone:
            reason, seed = "gone", await self.memory.seed(key)
        except ContextOverflow:
            reason, seed = "context", await self._rollover_seed(key, turn.memory)
        old = thread_id
        thread_id = await self._create(key, seed, gone=old if reason == "gone" else "")
        self.metrics.recoveries.labels(reason).inc()
        if reason == "context":
            log.info("thread %s outgrew the context window; rolled over to %s (%s)", old, thread_id, key.digest)
            await self.deleter.discard(old, name, key)
        else:
            log.info(
                "thread %s is gone; recovered as %s primed with %d items (%s)", old, thread_id, len(seed), key.digest
            )
        try:
            sent = await self._send(thread_id, turn, key, on_delta, on_status, approve)
        except ThreadGone:
            raise Unavailable(f"new thread {thread_id} vanished at once") from None
        except ContextOverflow:
            raise TooLong("message alone exceeds the context window") from None
        return Answer(sent.text, thread_id, recovered=True, usage=sent.usage, items=sent.items)

    async def _check_model(self) -> None:
        """Before the first thread this process makes: is ``OPENAI_MODEL`` known? (No thread for a wrong one.)

        One check at a time: messages arriving together wait for the same answer."""
        if self._model_known():
            return
        check = self._model_check
        if check is None or check.done():
            self._model_check = check = asyncio.ensure_future(self.assistant.check_model())
        try:
            await asyncio.shield(check)
        except UnknownModel:
            self._model_bad_until = time.monotonic() + MODEL_RECHECK
            raise

    def _model_known(self) -> bool:
        """A check passed (known from its end on, before its waiters resume)."""
        check = self._model_check
        return check is not None and check.done() and not check.cancelled() and check.exception() is None

    async def _create(self, key: ThreadKey, seed: list[Turn], *, gone: str = "") -> str:
        thread_id = await self.assistant.create_thread(key, seed)
        try:
            await self.store.save_thread(key, thread_id, self.assistant.name, gone=gone)
        except BaseException:
            # Nothing could ever find this thread again: delete it now, or keep trying from here.
            await asyncio.shield(self.unrecorded.drop(thread_id))
            raise
        return thread_id

    async def _send(self, thread_id: str, turn: UserTurn, key: ThreadKey, on_delta: DeltaCallback | None,
                    on_status: StatusCallback | None = None, approve: Approve | None = None) -> Sent:
        profile = await self.profiles.resolve(key)  # per request: an edited profile needs no new thread
        started = time.perf_counter()
        try:
            sent = await self.assistant.send(thread_id, turn, key=key, on_delta=on_delta, profile=profile,
                                             on_status=on_status, approve=approve)
        finally:
            self.metrics.latency.observe(time.perf_counter() - started)
        for tool, outcome in sent.tool_calls:
            self.metrics.tool_calls.labels(tool, outcome).inc()
        usage = sent.usage
        self.metrics.tokens.labels("input").inc(usage.input_tokens)
        self.metrics.tokens.labels("output").inc(usage.output_tokens)
        self.metrics.tokens.labels("cached").inc(usage.cached_tokens)
        return sent

    async def _rollover_seed(self, key: ThreadKey, summary: str) -> list[Turn]:
        kept = await self.store.turns(key)
        recent = kept[-ROLLOVER_TURNS:]
        if summary or not self.settings.context_summary:
            return [*as_seed(summary), *recent]
        try:
            summary = (await self.assistant.summarize(kept)).text
        except (BotError, ContextOverflow) as exc:
            log.warning("summary for roll-over failed (%s); re-priming with recent turns only", exc)
            return recent
        return [*as_seed(summary), *recent]

    async def _discard(self, key: ThreadKey, thread_id: str) -> None:
        """Undo a thread made for a message that could not be answered at all (owed if the provider fails)."""
        with contextlib.suppress(StoreError):
            await self.deleter.discard(thread_id, self.assistant.name, key)
            await self.store.delete_local(key, thread_id)

    async def _user_keys(self, key: ThreadKey) -> list[ThreadKey]:
        with unavailable():
            return await self.store.user_keys(key.user_id)

    async def _forget_many(self, keys: list[ThreadKey]) -> ForgetResult:
        threads = pending = 0
        for key in keys:
            result = await self.forget(key)
            threads += result.threads
            pending += result.remote_pending
        return ForgetResult(threads, pending)

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


def _kind(exc: BotError) -> str:
    """The metric label: the nearest error class users can meet (a backend's subclasses count as their base)."""
    return next(c.__name__ for c in type(exc).__mro__ if c.__module__ == BotError.__module__)


class _Silent(BotError):
    """Over a limit and already told: say nothing."""
