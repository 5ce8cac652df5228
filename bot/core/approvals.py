"""Approvals of tool calls: the asker decides, with a button, whether an MCP tool that may change anything runs.

The assistant backend meets an ``mcp_approval_request`` and calls the :data:`~bot.domain.Approve` callback
:meth:`Approvals.approver` made for the message. That callback opens the approval in Redis
(:class:`~bot.store.approvals.ApprovalStore`: a random token, bound to a one-way digest of the asker), has
the adapter show the asker a private prompt (:attr:`~bot.domain.Incoming.ask`, the token in its buttons),
and waits up to ``TOOL_APPROVAL_TIMEOUT`` for the decision: no decision in time is ``expired``, and the model
is told the call was declined. A prompt that cannot be shown, or a decision Redis cannot keep, is ``failed``
(one WARNING); a wait cut short (cancelled at shutdown, failed) is closed to clicks and its prompt says so,
so a click after it never reads "Approved" for a call that did not run. Whichever worker gets the click
calls :meth:`Approvals.decide`, which records it only for the asker, and only once.

A message without an ``ask`` (the console, a backend test) or without a single asker gets no prompt: its
tool calls that need approval are declined, as they always were.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets

from bot.assistants.tools import MAX_APPROVAL_ROUNDS
from bot.domain import SHARED, ApprovalDecision, Approve, Expire, Incoming, ToolApproval, hash_user
from bot.store import Store, StoreError, unavailable
from bot.store.approvals import ApprovalStore, Decided

log = logging.getLogger("threadkeeper.core")

WITHDRAW_WAIT = 1.5
"""Seconds a given-up wait spends closing its approval and its prompt (shutdown gives cancelled tasks 2 s)."""


def asker_of(msg: Incoming) -> str:
    """The platform id of the person the answer is for ("" where there is no single one)."""
    asker = msg.author or msg.key.user
    return "" if asker == SHARED else asker


class Approvals:
    """Opens approvals for the answers of this process and records the clicks of any."""

    def __init__(self, store: Store, *, timeout: float) -> None:
        self.store = ApprovalStore(store.redis, store.keys)
        self.timeout = timeout

    @property
    def longest(self) -> float:
        """The longest one answer may wait for approvals (each round's prompts are shown together)."""
        return MAX_APPROVAL_ROUNDS * self.timeout

    def approver(self, msg: Incoming) -> Approve | None:
        """The callback for ``msg``'s tool approvals; None when nobody can be asked (they are declined)."""
        ask, asker = msg.ask, asker_of(msg)
        if ask is None or not asker:
            return None
        platform, digest = msg.key.platform, msg.key.digest

        async def approve(request: ToolApproval) -> ApprovalDecision:
            token = secrets.token_urlsafe(18)
            label = f"{request.server}: {request.tool}"
            expire: Expire | None = None
            try:
                await self.store.open(token, hash_user(platform, asker), label[:200], self.timeout)
                expire = await ask(dataclasses.replace(request, token=token))
                decision = await self.store.wait(token, within=self.timeout)
            except asyncio.CancelledError:
                await self._withdraw(token, expire)
                raise
            except Exception as exc:  # the prompt could not be shown, or Redis could not keep the decision
                redis = isinstance(exc, StoreError)
                why = (str(exc).splitlines() or [""])[0][:200]
                log.warning("could not %s for %s in %s (%s: %s); not run", "keep the approval" if redis else
                            "show the approval prompt", label, digest, "redis" if redis else type(exc).__name__, why)
                await self._withdraw(token, expire)
                return "failed"
            if decision is None and expire is not None:
                await expire(False)
            outcome: ApprovalDecision = "expired" if decision is None else "approved" if decision else "declined"
            log.info("tool %s: %s (the asker's approval, in %s)", label, outcome, digest)
            return outcome

        return approve

    async def _withdraw(self, token: str, expire: Expire | None) -> None:
        """A wait given up (cancelled, failed): closed to clicks, the prompt says so. Bounded, and it runs to its end
        even if the caller is cancelled meanwhile (a shutdown's second cancel)."""
        async def withdraw() -> None:
            with contextlib.suppress(StoreError):
                await self.store.close(token)
            if expire is not None:
                await expire(True)

        task = asyncio.ensure_future(withdraw())
        task.add_done_callback(_retrieved)
        await asyncio.wait({task}, timeout=WITHDRAW_WAIT)

    async def decide(self, platform: str, token: str, user: str, approve: bool) -> tuple[Decided, str]:
        """A click on a prompt's button by ``user``: ``decided`` (with the tool's label), ``not_yours`` (someone
        else's prompt: nothing changes) or ``gone`` (decided already, or past its deadline)."""
        if not token or not user:
            return "gone", ""
        with unavailable():
            return await self.store.decide(token, hash_user(platform, user), approve)


def _retrieved(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("withdrawing an approval failed: %s", task.exception())
