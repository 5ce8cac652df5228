"""The garbage collector set for a long-running bot process (issue 19).

CPython collects its young generation whenever the objects it tracks have grown by 700 since the last pass. In a
bot with hundreds of answers in flight that is hundreds of passes a minute; each promotes the answers' live
futures, frames and request objects into the older generations, which then fill and set off full passes over
everything the process ever imported, stopping the event loop in the middle of a burst (measured through the
front-door bench: up to 215 ms, with 300 answers streaming at once).

So, once the process is built and before it takes messages: one full pass (start-up's garbage is freed, not kept),
then :func:`gc.freeze` moves everything alive (modules, settings, clients: they live as long as the process) out
of the collector's sight, and the young generation is collected after :data:`YOUNG_THRESHOLD` instead of 700.
Full passes then walk only what was made since. The cost: a frozen object that later becomes part of an unreachable
cycle is never freed (reference counting still frees the rest), so at most what start-up made and drops later (the
profiles before a reload, say), once, since nothing made later is frozen; cycles made while serving are collected
as before, a little later.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000
"""Growth of the tracked objects between two passes over the young generation (CPython's default: 700)."""


def settle_heap() -> None:
    """Collect once, freeze what is alive, and collect the young generation less often from now on."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
