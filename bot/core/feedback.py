"""Feedback on answers: the thumbs under every finished answer, counted and logged, never their text.

Adapters call :func:`record_feedback` when someone clicks one of the buttons. It counts the click in
``threadkeeper_feedback_total{platform,value}``, keeps a count per platform and value in Redis (what
``python -m bot threads stats`` shows) and logs the thread's digest and the message id only.
"""

from __future__ import annotations

import logging
from typing import Protocol

from bot.metrics import Metrics
from bot.store import Store, unavailable

log = logging.getLogger("threadkeeper.feedback")

FEEDBACK_VALUES: tuple[str, ...] = ("positive", "negative")
"""What a click says; anything else is ignored."""


class HasStoreAndMetrics(Protocol):
    """What of the core feedback needs (:class:`~bot.core.message_path.Core` has both)."""

    store: Store
    metrics: Metrics


async def record_feedback(core: HasStoreAndMetrics, platform: str, value: str, *, digest: str,
                          message: str) -> bool:
    """Count one click; False (nothing counted) for a value that is not one of :data:`FEEDBACK_VALUES`."""
    if value not in FEEDBACK_VALUES:
        log.info("ignored feedback %r on %s message %s (thread %s)", value[:20], platform, message, digest)
        return False
    core.metrics.feedback.labels(platform, value).inc()
    log.info("feedback %s on %s message %s (thread %s)", value, platform, message, digest)
    with unavailable():
        await core.store.record_feedback(platform, value)
    return True


async def feedback_counts(core: HasStoreAndMetrics) -> dict[str, dict[str, int]]:
    """Clicks so far, by platform then value (every value present, zero when none)."""
    counts: dict[str, dict[str, int]] = {}
    for name, n in (await core.store.feedback_counts()).items():
        platform, _, value = name.partition(":")
        counts.setdefault(platform, dict.fromkeys(FEEDBACK_VALUES, 0))[value] = n
    return counts
