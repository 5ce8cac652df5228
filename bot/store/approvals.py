"""Tool approvals shared by every worker: the prompt's buttons may be clicked at another process than the
one waiting for them (Slack over HTTP with several workers, another Discord shard's process).

One hash per open approval, named by a digest of its random token (the token itself is only in the
prompt's buttons): who may decide it (a digest of the token and the asker's one-way id, so the hash names
nobody and ``/forget all`` leaves nothing that points at the person), a label for the decided prompt
("docs: create_ticket") and its state (``open``, ``1`` approved, ``0`` declined, ``expired``). A decision
is one Lua script: only the asker, only once, only while open. The waiting worker polls the state and,
at its deadline, closes the approval in one script, so a click that lands just then is either the
decision it reads or told the request is gone, never both. Polling goes on through a Redis that fails
for a moment (the asker's click may be retried meanwhile); a waiter that stops early (cancelled, or its
prompt could not be shown) closes it the same way, so a later click can never look approved. The key
lives a minute past the deadline, so a late click hears "no longer open" rather than nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Literal

from bot.store.connect import RedisClient, StoreError, as_str
from bot.store.keys import Keys

POLL = 0.2
"""Seconds between two looks at an open approval's state (one HGET: a waiting answer costs next to nothing)."""
LINGER = 60.0
"""Seconds an approval's key outlives its deadline (a late click is told it is no longer open)."""

Decided = Literal["decided", "not_yours", "gone"]

DECIDE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', ''} end
local fields = redis.call('HMGET', KEYS[1], 'asker', 'state', 'label')
if fields[1] ~= ARGV[1] then return {'not_yours', ''} end
if fields[2] ~= 'open' then return {'gone', fields[3]} end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
return {'decided', fields[3]}
"""

OPEN = """
redis.call('HSET', KEYS[1], 'asker', ARGV[1], 'label', ARGV[2], 'state', 'open')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
"""

CLOSE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'open' then
  redis.call('HSET', KEYS[1], 'state', 'expired')
  return 'expired'
end
return state or 'expired'
"""


def _raise_if_cancelled() -> None:
    """Python 3.11's ``asyncio.wait_for`` (inside redis-py) drops a cancel that lands as the reply arrives; the
    task still counts it, so a shutdown's cancel is honoured here instead of waiting out the timeout."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError



class ApprovalStore:
    """Open approvals: :meth:`open` by the waiting worker, :meth:`decide` by whichever gets the click."""

    def __init__(self, redis: RedisClient, keys: Keys, *, poll: float = POLL) -> None:
        self.redis = redis
        self.keys = keys
        self.poll = poll
        self._open = redis.register_script(OPEN)
        self._decide = redis.register_script(DECIDE)
        self._close = redis.register_script(CLOSE)

    @staticmethod
    def _binding(token: str, asker: str) -> str:
        """Who may decide, as stored: useless without the token, so it names nobody."""
        return hashlib.sha256(f"{token}\x00{asker}".encode()).hexdigest()[:32]

    async def open(self, token: str, asker: str, label: str, ttl: float) -> None:
        """An approval ``asker`` (a one-way digest) may decide within ``ttl`` seconds (plus :data:`LINGER`)."""
        who = self._binding(token, asker)
        await self._open(keys=[self.keys.approval(token)], args=[who, label, int((ttl + LINGER) * 1000)])

    async def decide(self, token: str, asker: str, approve: bool) -> tuple[Decided, str]:
        """Record the decision if ``asker`` may make it and it is still open; the outcome and the label."""
        who = self._binding(token, asker)
        outcome, label = await self._decide(keys=[self.keys.approval(token)], args=[who, "1" if approve else "0"])
        return as_str(outcome), as_str(label)  # type: ignore[return-value]

    async def wait(self, token: str, within: float) -> bool | None:
        """The decision (True: approved), or None when none came ``within`` seconds (the approval is closed).

        A poll that fails is tried again at the next; only closing it at the end raises :class:`StoreError`."""
        key = self.keys.approval(token)
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            try:
                state = await self.redis.hget(key, "state")  # type: ignore[misc]
            except StoreError:
                state = "open"  # Redis away for a moment: the decision, if any, is read once it is back
            _raise_if_cancelled()
            if state is None or as_str(state) != "open":
                break
            await asyncio.sleep(min(self.poll, left))
        return await self.close(token)

    async def close(self, token: str) -> bool | None:
        """Close the approval to clicks: the decision made before (True: approved), else None."""
        state = as_str(await self._close(keys=[self.keys.approval(token)]))
        return {"1": True, "0": False}.get(state)
