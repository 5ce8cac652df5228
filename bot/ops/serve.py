"""What every long-running bot process runs beside its adapter: metrics and the in-process janitor."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from bot.ops.janitor import janitor_task
from bot.ops.metrics_http import maybe_start_metrics_server
from bot.runtime import Runtime


@contextlib.asynccontextmanager
async def extras(runtime: Runtime) -> AsyncIterator[None]:
    """Serve ``/metrics`` on METRICS_PORT and run the janitor every JANITOR_INTERVAL, when set; reload
    ``PROFILES_FILE`` on SIGHUP; check ``OPENAI_MODEL`` while the adapter connects."""
    runtime.core.warm_up()
    metrics = await maybe_start_metrics_server(runtime)
    janitor = asyncio.create_task(janitor_task(runtime)) if runtime.settings.janitor_interval else None
    try:
        with runtime.core.profiles.on_sighup():
            yield
    finally:
        if janitor is not None:
            janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await janitor
        if metrics is not None:
            await metrics.stop()
