"""One key builder for every Redis key: ``{prefix}:{kind}:{id}``.

Every key that belongs to one thread carries the thread key's one-way digest
as a hash tag (``{3f2a…}``), so multi-key scripts stay on one Cluster slot;
per-user keys carry the digest of the user within a workspace. No key *name*
ever holds a platform id in clear, so the keys that must outlive an erasure
(dedupe markers, daily token counters: ``/forget`` must not reset a budget)
name nobody. Only the index (key id -> thread) names users, and erasure
removes those entries. Keys that span threads (index, user sets, tombstones)
are updated in a separate step on Cluster.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bot.domain import ThreadKey


def _user_tag(user_id: str) -> str:
    """A user within a workspace, one-way: the tag of their rate, budget and thread-set keys."""
    return hashlib.sha256(user_id.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "tk"

    def _k(self, kind: str, ident: str) -> str:
        return f"{self.prefix}:{kind}:{ident}"

    # Per thread (hash-tagged by the thread key)
    def thread(self, key: ThreadKey) -> str:
        return self._k("thread", f"{{{key.digest}}}")

    def turns(self, key: ThreadKey) -> str:
        return self._k("turns", f"{{{key.digest}}}")

    def lock(self, key: ThreadKey) -> str:
        return self._k("lock", f"{{{key.digest}}}")

    def fold(self, key: ThreadKey) -> str:
        """Kept items that left the window, waiting to be folded into the thread's summary."""
        return self._k("fold", f"{{{key.digest}}}")

    def seen(self, key: ThreadKey, message_id: str) -> str:
        return self._k("seen", f"{{{key.digest}}}:{message_id}")

    # Per user (hash-tagged by the user within a workspace)
    def rate(self, key: ThreadKey, window: int) -> str:
        return self._k("rate", f"{{{_user_tag(key.user_id)}}}:{window}")

    def rate_notice(self, key: ThreadKey, window: int) -> str:
        return self._k("ratenote", f"{{{_user_tag(key.user_id)}}}:{window}")

    def tokens(self, key: ThreadKey, day: str) -> str:
        return self._k("tokens", f"{{{_user_tag(key.user_id)}}}:{day}")

    def budget_notice(self, key: ThreadKey, day: str) -> str:
        return self._k("budgetnote", f"{{{_user_tag(key.user_id)}}}:{day}")

    def user(self, user_id: str) -> str:
        """Set of thread key ids of one user in one workspace (``ThreadKey.user_id``); empty sets vanish."""
        return self._k("user", _user_tag(user_id))

    # Chat backend history, tagged by its own thread id
    def chat_meta(self, thread_id: str) -> str:
        return self._k("chatmeta", f"{{{thread_id}}}")

    def chat_history(self, thread_id: str) -> str:
        return self._k("chat", f"{{{thread_id}}}")

    # Global
    @property
    def index(self) -> str:
        """Sorted set: thread key id -> last activity (unix seconds)."""
        return self._k("index", "last_active")

    @property
    def index_ids(self) -> str:
        """Hash: thread key id -> "backend thread_id"; outlives the per-thread keys so nothing is orphaned."""
        return self._k("index", "threads")

    @property
    def tombstones(self) -> str:
        """Hash: remote thread id -> "backend key_id": remote deletions still owed."""
        return self._k("tombstones", "pending")

    def flag(self, name: str) -> str:
        return self._k("flag", name)

    def feedback(self) -> str:
        """Counts of the feedback buttons' clicks, ``<platform>:<value>`` -> n (names nobody)."""
        return self._k("feedback", "counts")

    def janitor_lock(self) -> str:
        return self._k("janitor", "lock")

    def server_notes(self, server: str) -> str:
        """Hash: facts learned about one assistant server and model (``server`` holds the base URL: hashed)."""
        return self._k("server", hashlib.sha256(server.encode()).hexdigest()[:16])

    # Platform rate-limit lanes, tagged by their scope (``slack:T…``) so one scope's keys share a slot
    def pace(self, scope: str, method: str) -> str:
        """Hash: one method's lane in one scope (next turn, blocked until, interval; milliseconds)."""
        return self._k("pace", f"{{{scope}}}:{method}")

    def pace_hold(self, scope: str, method: str, channel: str) -> str:
        """Who has a call of ``method`` in flight in ``channel`` (refusals the platform keeps per channel)."""
        return self._k("pacehold", f"{{{scope}}}:{method}:{channel}")

    def pace_notice(self, scope: str) -> str:
        """Set for a minute by the scope's first refusal: one warning per workspace per minute."""
        return self._k("pacenote", f"{{{scope}}}")

    def pace_loud(self, scope: str) -> str:
        """Set by a refusal until the scope's refused lanes are quiet again (calls then skip the lanes)."""
        return self._k("paceloud", f"{{{scope}}}")

    # Shared conversations (``bot.store.shared``) and tool approvals (``bot.store.approvals``)
    def shared_person(self, digest: str) -> str:
        """Set: the shared conversations one person's words are in (``digest``: the person, one-way)."""
        return self._k("shared", digest)

    def joined(self, place: str) -> str:
        """Set while the bot is in a platform thread (``place``, hashed)."""
        return self._k("joined", hashlib.sha256(place.encode()).hexdigest()[:24])

    def approval(self, token: str) -> str:
        """One open approval, by a digest of its token (hash-tagged: the scripts use it alone)."""
        return self._k("approval", f"{{{hashlib.sha256(token.encode()).hexdigest()[:32]}}}")

    # Platform installations (Slack OAuth), named by a one-way digest of the workspace
    def installation(self, digest: str) -> str:
        """One workspace's installation, sealed with ``TOKEN_ENCRYPTION_KEY`` (see ``bot.store.installations``)."""
        return self._k("install", digest)

    @property
    def installations(self) -> str:
        """Set of the installed workspaces' digests (``doctor`` counts them)."""
        return self._k("install", "all")

    @property
    def erasing(self) -> str:
        """Hash: workspaces being erased (digest -> digest of the installation that goes last)."""
        return self._k("install", "erasing")

    def oauth_state(self, digest: str) -> str:
        """An install flow's state, begun by one worker and finished by any (a digest of the state)."""
        return self._k("oauthstate", digest)
