"""``python -m bench.bot_proc bot slack|discord``, ``python -m bench.bot_proc baseline`` or ``... floor``.

The process the front-door bench measures: ``bot`` runs the bot's own ``python -m bot`` entry point
(:func:`bot.__main__.main`, settings from the environment, its start-up checks, logging and shutdown as
shipped); ``baseline`` runs the plain synchronous Bolt app of :mod:`bench.front_baseline`; ``floor`` the
least wire work of :mod:`bench.front_floor`.

The only addition: with ``BENCH_PROFILE_OUT`` set, SIGUSR1 starts a CPU-time profiler (cProfile timed by
:func:`time.thread_time` of the main thread, where the event loop runs) and SIGUSR2 stops it and writes
the stats there, so a profile covers the load and not the start-up. Without it nothing is installed.
"""

from __future__ import annotations

import cProfile
import os
import signal
import sys
import time
from types import FrameType


def _install_profiler(path: str) -> None:
    profiler = cProfile.Profile(time.thread_time)

    def start(_signum: int, _frame: FrameType | None) -> None:
        profiler.enable()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(path + ".part")
        os.replace(path + ".part", path)  # whole or absent, for the bench waiting for it

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


def main(argv: list[str]) -> int:
    path = os.environ.get("BENCH_PROFILE_OUT")
    if path:
        _install_profiler(path)
    if argv[:1] == ["baseline"]:
        from bench.front_baseline import main as baseline_main

        return baseline_main()
    if argv[:1] == ["floor"]:
        from bench.front_floor import main as floor_main

        return floor_main()
    if argv[:1] != ["bot"]:
        print("usage: python -m bench.bot_proc bot COMMAND | baseline | floor", file=sys.stderr)
        return 2
    from bot.__main__ import main as bot_main

    return bot_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
