"""What every long-running bot process shares: signal handling, metrics and the janitor."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator

from bot.runtime import Runtime


@contextlib.asynccontextmanager
async def extras(runtime: Runtime) -> AsyncIterator[None]:
    """Serve ``/metrics`` on METRICS_PORT and run the janitor every JANITOR_INTERVAL, when set."""
    from bot.janitor import janitor_task
    from bot.metrics_http import maybe_start_metrics_server

    metrics = await maybe_start_metrics_server(runtime)
    janitor = asyncio.create_task(janitor_task(runtime)) if runtime.settings.janitor_interval else None
    try:
        yield
    finally:
        if janitor is not None:
            janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await janitor
        if metrics is not None:
            await metrics.stop()


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Set ``stop`` on SIGTERM/SIGINT while inside (where the loop can handle signals)."""
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    try:
        yield
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
