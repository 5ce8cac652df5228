"""Approvals of tool calls: the asker decides, with a button, whether an MCP tool that may change anything runs.

The assistant backend meets an ``mcp_approval_request`` and calls the :data:`~bot.domain.Approve` callback
:meth:`Approvals.approver` made for the message. That callback opens the approval in Redis
(:class:`~bot.store.approvals.ApprovalStore`: a random token, bound to a one-way digest of the asker), has
the adapter show the asker a private prompt (:attr:`~bot.domain.Incoming.ask`, the token in its buttons),
and waits up to ``TOOL_APPROVAL_TIMEOUT`` for the decision: no decision in time is ``expired``, and the model
is told the call was declined. Whichever worker gets the click calls :meth:`Approvals.decide`, which
records it only for the asker, and only once.

A message without an ``ask`` (the console, a backend test) or without a single asker gets no prompt: its
tool calls that need approval are declined, as they always were.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets

from bot.assistants.tools import MAX_APPROVAL_ROUNDS
from bot.domain import SHARED, ApprovalDecision, Approve, Incoming, ToolApproval, hash_user
from bot.errors import Unavailable
from bot.store import Store, StoreError
from bot.store.approvals import ApprovalStore, Decided

log = logging.getLogger("threadkeeper.core")


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
            try:
                await self.store.open(token, hash_user(platform, asker), label[:200], self.timeout)
                expire = await ask(dataclasses.replace(request, token=token))
                decision = await self.store.wait(token, within=self.timeout)
            except StoreError as exc:
                log.warning("could not ask for approval of %s in %s (redis: %s); declined", label, digest, exc)
                return "declined"
            except Exception as exc:  # the prompt could not be shown: nobody can approve it
                why = (str(exc).splitlines() or [""])[0][:200]
                log.warning("could not show the approval prompt for %s in %s (%s: %s); declined", label, digest,
                            type(exc).__name__, why)
                return "declined"
            if decision is None and expire is not None:
                await expire()
            outcome: ApprovalDecision = "expired" if decision is None else "approved" if decision else "declined"
            log.info("tool %s: %s (the asker's approval, in %s)", label, outcome, digest)
            return outcome

        return approve

    async def decide(self, platform: str, token: str, user: str, approve: bool) -> tuple[Decided, str]:
        """A click on a prompt's button by ``user``: ``decided`` (with the tool's label), ``not_yours`` (someone
        else's prompt: nothing changes) or ``gone`` (decided already, or past its deadline)."""
        if not token or not user:
            return "gone", ""
        try:
            return await self.store.decide(token, hash_user(platform, user), approve)
        except StoreError as exc:
            raise Unavailable(f"redis: {exc}") from None
