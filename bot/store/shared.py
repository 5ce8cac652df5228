"""What shared conversations need besides the thread map: who said what, the context mark, joined threads.

Per thread, in the thread's own hash (so it has the thread's TTL and goes with every deletion of it):

* ``ctx``: the newest platform message already brought into the conversation (the next turn reads only
  what came after it);
* ``by:<digest>``: ids that find a person's turns on the provider again (:attr:`bot.assistants.base.Sent.items`:
  for the Conversations backend, the ids of the answers' items), space-separated;
* ``in:<digest>``: the same for the turns that quote what a person wrote (someone else's turn that brought
  their thread message along as context);
* ``reseeded``: the conversation was re-created from kept turns (it was lost, or outgrew the context): the
  copies of earlier turns in it carry no record of whose they are, so erasing anyone takes it whole.

``<digest>`` is :func:`~bot.domain.hash_user`, one-way: no record names a person in clear. Kept user turns
of a shared conversation carry the same digest (``"by"`` in their JSON), so erasure finds them.

Per person, ``{prefix}:shared:<digest>`` is the set of shared conversations (thread key ids) their words are in
(they wrote there, or a turn there quoted them): the list ``/forget all`` walks. Its members name a channel and a
platform thread, never a person.

``{prefix}:joined:<hash>`` marks a platform thread the bot answered in (``Incoming.place``): follow-ups
there need no mention. It lives as long as an idle conversation does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.domain import ThreadKey
from bot.store.connect import RedisClient, as_str
from bot.store.keys import Keys
from bot.store.records import SharedRecord

MARK = "ctx"
BY = "by:"
IN = "in:"


@dataclass(frozen=True, slots=True)
class Said:
    """What one shared conversation records of one person."""

    wrote: tuple[str, ...] = ()
    """Items holding their own turns."""
    quoted: tuple[str, ...] = ()
    """Items holding someone else's turn that quoted them."""


@dataclass(frozen=True, slots=True)
class Voices:
    """Everyone a shared conversation records, by digest."""

    people: dict[str, Said] = field(default_factory=dict)
    reseeded: bool = False
    """Re-created from kept turns: whose words its earlier items hold is not known."""

    def others_wrote(self, digest: str) -> bool:
        """Whether anyone else wrote a turn here."""
        return any(d != digest and said.wrote for d, said in self.people.items())


class SharedRecords:
    """The store's part of shared conversations (see the module docstring)."""

    def __init__(self, redis: RedisClient, keys: Keys, *, idle_ttl: float, cluster: bool = False) -> None:
        self.redis = redis
        self.keys = keys
        self.idle_ttl = idle_ttl
        self.cluster = cluster

    def person(self, digest: str) -> str:
        """Set: the shared conversations one person's words are in."""
        return self.keys.shared_person(digest)

    # -- the message path (the mark itself is read with the thread's lock: ``Mapping.mark``) ------------
    @staticmethod
    def thread_args(rec: SharedRecord) -> list[str]:
        """What the turn's own script writes in the thread hash (``FINISH`` in :mod:`bot.store.scripts`), only while
        the thread exists: the mark, reseeded, the item ids and the fields that name whose words they hold."""
        fields = ([BY + rec.wrote] if rec.wrote else []) + [IN + d for d in rec.quoted if d != rec.wrote]
        return [rec.mark, "1" if rec.reseeded else "", " ".join(rec.items) if fields else "", *fields]

    async def record(self, key: ThreadKey, rec: SharedRecord, *, joined: bool = False) -> None:
        """After an answer whose thread hash part the turn's script wrote, in one round trip at most: the people's
        sets, the writer's daily tokens (``charge``: their key) and, with ``joined`` (on Cluster, where the
        script cannot reach that key), the joined ``place``."""
        people = list(dict.fromkeys(d for d in (rec.wrote, *rec.quoted) if d)) if rec.items else []
        place = rec.place if joined else ""
        charge = rec.charge
        if not (people or place or (charge and charge[1])):
            return
        ttl = max(1, int(self.idle_ttl * 1000))
        async with self.redis.pipeline(transaction=False) as pipe:
            for digest in people:
                pipe.sadd(self.person(digest), key.id)
                pipe.pexpire(self.person(digest), ttl)
            if place:
                pipe.set(self.keys.joined(place), "1", px=ttl)
            if charge and charge[1]:
                tokens = self.keys.tokens(charge[0], time.strftime("%Y%m%d", time.gmtime()))
                pipe.incrby(tokens, charge[1])
                pipe.expire(tokens, 2 * 86400)
            await pipe.execute()

    async def joined(self, place: str) -> bool:
        return bool(await self.redis.exists(self.keys.joined(place)))

    # -- erasure -----------------------------------------------------------------------------------
    async def conversations_of(self, digest: str) -> list[ThreadKey]:
        """The shared conversations a person's words are in (malformed members skipped)."""
        members = await self.redis.smembers(self.person(digest))  # type: ignore[misc]
        out = []
        for member in sorted(as_str(m) for m in members):
            try:
                out.append(ThreadKey.parse(member))
            except ValueError:
                continue
        return out

    async def voices(self, key: ThreadKey) -> Voices:
        raw = await self.redis.hgetall(self.keys.thread(key))  # type: ignore[misc]
        people: dict[str, Said] = {}
        reseeded = False
        for name, value in ((as_str(k), as_str(v)) for k, v in raw.items()):
            reseeded = reseeded or (name == "reseeded" and value == "1")
            for prefix in (BY, IN):
                if name.startswith(prefix):
                    digest = name[len(prefix):]
                    said = people.get(digest, Said())
                    ids = tuple(value.split())
                    people[digest] = Said(said.wrote + ids, said.quoted) if prefix == BY \
                        else Said(said.wrote, said.quoted + ids)
        return Voices(people, reseeded)

    async def erase(self, key: ThreadKey, digest: str, *, keep_record: bool = False) -> int:
        """Remove one person from a shared conversation here: their kept turns (and any waiting to be folded
        into the memory), the thread's summary (it may repeat their words) and, unless ``keep_record`` (the
        provider still holds their items), the record of their items. Returns the kept turns removed."""
        lists = [self.keys.turns(key), self.keys.fold(key)]
        removed = 0
        for name in lists:
            raw = await self.redis.lrange(name, 0, -1)  # type: ignore[misc]
            theirs = [as_str(item) for item in raw if digest in _whose(item)]
            if theirs:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for item in dict.fromkeys(theirs):
                        pipe.lrem(name, 0, item)
                    counts = await pipe.execute()
                removed += sum(int(c) for c in counts) if name == lists[0] else 0
        fields = ["summary"] + ([] if keep_record else [BY + digest, IN + digest])
        await self.redis.hdel(self.keys.thread(key), *fields)  # type: ignore[misc]
        return removed

    async def leave(self, digest: str, key: ThreadKey) -> None:
        """The conversation holds nothing of this person any more (or no longer exists)."""
        await self.redis.srem(self.person(digest), key.id)  # type: ignore[misc]

    async def sweep(self, keys: Sequence[ThreadKey]) -> None:
        """After a whole workspace's threads went (:mod:`bot.core.workspaces`): the marks a ``/forget`` leaves to
        their TTL go too, since nothing of that workspace should stay: the message ids claimed in its threads
        (``seen``: they name a channel and a ``ts``), the platform threads the bot joined there (``joined``), and the
        daily token counts of its conversations' keys (``tokens``, ``budgetnote``: today's and yesterday's). A
        joined thread is found from its conversation's key where that names the thread (``THREAD_SCOPE=thread`` or
        ``shared``); the rest expire with an idle conversation. The counts of people who wrote only in shared
        conversations cannot be found (their keys are one-way digests of ids kept nowhere): they expire in two
        days, naming nobody."""
        if not keys:
            return
        digests = {key.digest for key in keys}
        doomed = {self.keys.joined(f"{key.platform}:{key.workspace}:{key.channel}")
                  for key in keys if "/" in key.channel}
        now = time.time()
        days = {time.strftime("%Y%m%d", time.gmtime(now - back)) for back in (0, 86400)}
        for key in keys:
            doomed.update(name for day in days
                          for name in (self.keys.tokens(key, day), self.keys.budget_notice(key, day)))
        seen = f"{self.keys.prefix}:seen:{{"
        async for name in self.redis.scan_iter(match=f"{self.keys.prefix}:seen:*", count=1000):
            text = as_str(name)
            if text.startswith(seen) and text[len(seen):].split("}", 1)[0] in digests:
                doomed.add(text)
        names = sorted(doomed)
        for start in range(0, len(names), 500):  # one DEL each: on Cluster they are in many slots
            async with self.redis.pipeline(transaction=False) as pipe:
                for name in names[start:start + 500]:
                    pipe.delete(name)
                await pipe.execute()


def _whose(item: Any) -> set[str]:
    """The people a kept turn holds words of: who wrote it (``by``) and whom it quoted (``about``)."""
    try:
        value = json.loads(item)
    except (TypeError, ValueError):
        return set()
    if not isinstance(value, dict):
        return set()
    about = value.get("about")
    return {str(d) for d in [value.get("by"), *(about if isinstance(about, list) else [])] if d}
