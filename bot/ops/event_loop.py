"""The event loop the serving commands (``slack``, ``discord``) run on: uvloop where it is installed (issue 19).

uvloop puts libuv under asyncio's own API, so nothing above the loop changes; measured through the front-door
bench (Slack HTTP door, same run, alternating), it takes about 5 % off the process's CPU per answer, for one
conversation and for a hundred at once. It is a dependency wherever it builds (not on Windows); ``EVENT_LOOP``
chooses: ``auto`` (uvloop if importable, else asyncio's), ``uvloop`` (required: a start-up error without it) or
``asyncio``. The console and the one-shot commands keep asyncio's loop: they gain nothing from a faster one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from bot.config import ConfigError, EventLoopChoice

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: EventLoopChoice) -> LoopFactory | None:
    """The factory of the chosen loop; None for asyncio's own. :class:`ConfigError` when uvloop is required
    but not installed."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as exc:  # not installed, or not built for this platform
        if choice == "uvloop":
            raise ConfigError(f"EVENT_LOOP: uvloop cannot be imported here ({exc}); install it "
                              "(pip install uvloop) or set EVENT_LOOP=asyncio") from None
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def run_serving(choice: EventLoopChoice, main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run ``main()`` to completion on the chosen loop, as :func:`asyncio.run` does (the adapters' start-up line
    names the loop: :func:`adapters.kit.tasks.event_loop_name`)."""
    factory = loop_factory(choice)  # before the coroutine exists: a start-up error leaves none un-awaited
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())
