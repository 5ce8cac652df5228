"""Prometheus ``GET /metrics`` and a liveness ``GET /healthz`` on ``METRICS_PORT``.

Adapters start it next to their own transport when ``METRICS_PORT`` is set
(:func:`maybe_start_metrics_server`); it serves the process's own registry
(:class:`bot.metrics.Metrics`), so several bots in one process never mix
their numbers. ``/healthz`` answers 200 while the core takes messages and 503
once it is draining for shutdown, so a load balancer stops sending work first.
"""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.runtime import Runtime

log = logging.getLogger("threadkeeper.metrics")

HOST = "0.0.0.0"
"""Every interface, so a scraper outside the container reaches it."""


class MetricsServer:
    """A running metrics server; :meth:`stop` closes it."""

    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self._runner = runner
        self.port = port
        """The bound port (the real one when 0 was asked for)."""

    async def stop(self) -> None:
        await self._runner.cleanup()


def metrics_app(runtime: Runtime) -> web.Application:
    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=runtime.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        ok, body = runtime.core.health()
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def start_metrics_server(runtime: Runtime, port: int, *, host: str = HOST) -> MetricsServer:
    """Serve ``/metrics`` and ``/healthz`` on ``port`` (0: any free port, see :attr:`MetricsServer.port`)."""
    runner = web.AppRunner(metrics_app(runtime), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return MetricsServer(runner, bound)


async def maybe_start_metrics_server(runtime: Runtime) -> MetricsServer | None:
    """:func:`start_metrics_server` on ``METRICS_PORT``, or ``None`` when it is 0 (the default: off)."""
    port = runtime.settings.metrics_port
    if not port:
        return None
    return await start_metrics_server(runtime, port)


__all__ = ["MetricsServer", "maybe_start_metrics_server", "metrics_app", "start_metrics_server"]
