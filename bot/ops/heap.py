"""The garbage collector set for a long-running bot process (issue 19).

CPython's defaults (a young collection every 700 new container objects) suit short scripts. In a bot answering
hundreds of messages at once they collect the young generation hundreds of times a minute, promote each answer's
short-lived futures, frames and request objects (alive across an ``await``) into the older generations, and so
trigger full collections that walk every object the process has ever imported: measured through the front-door
bench (Slack HTTP, its levels one after another, 300 answers streaming at once last), 1.4 s of the process's CPU
went to collections, full ones stopping the event loop for up to 170 ms in the middle of a burst.

So, once the process is built and before it takes messages: everything alive then (modules, settings, clients) is
moved out of the collector's sight for good (:func:`gc.freeze`, as the standard library documents for long-lived
servers), and the young generation is collected every :data:`YOUNG_THRESHOLD` allocations instead of 700. Cyclic
garbage is still collected; it lives a little longer.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000
"""New container objects between two collections of the young generation (CPython's default is 700)."""


def settle_heap() -> None:
    """Collect once, freeze what is alive (start-up's objects, never garbage), and collect less often from now on."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
