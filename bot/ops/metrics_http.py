"""Prometheus ``GET /metrics``, liveness ``GET /healthz`` and readiness ``GET /readyz`` on ``METRICS_PORT``.

Adapters start it next to their own transport when ``METRICS_PORT`` is set
(:func:`maybe_start_metrics_server`); it serves the process's own registry
(:class:`bot.metrics.Metrics`), so several bots in one process never mix
their numbers.

* ``/healthz`` (liveness, :meth:`bot.core.Core.health`): 200 while the core takes messages, 503 once
  it is draining for shutdown, so a load balancer stops sending work first. It never looks at Redis:
  an orchestrator that restarts unhealthy processes must not restart every bot because Redis blinked.
* ``/readyz`` (readiness, :meth:`bot.core.Core.ready`): liveness, and Redis answers a PING within
  1 s; 503 with ``"redis": false`` while it does not. Point a load balancer's or Kubernetes'
  readiness probe here.

Both answer JSON: ``{"ok": ..., "in_flight": ..., "backend": ...}``, and ``/readyz`` adds ``"redis"``.
A busy or forbidden ``METRICS_PORT`` is a one-line :class:`~bot.config.ConfigError`.
"""

from __future__ import annotations

import errno
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.config import ConfigError
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

    async def readyz(_request: web.Request) -> web.Response:
        ok, body = await runtime.core.ready()
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start_metrics_server(runtime: Runtime, port: int, *, host: str = HOST) -> MetricsServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``port`` (0: any free port, see :attr:`MetricsServer.port`).

    A port that cannot be bound raises :class:`~bot.config.ConfigError` naming ``METRICS_PORT``.
    """
    runner = web.AppRunner(metrics_app(runtime), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"METRICS_PORT: {bind_failure(port, exc)}") from None
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return MetricsServer(runner, bound)


def bind_failure(port: int, exc: OSError) -> str:
    """Why ``port`` could not be listened on, in a few words ("port 9100 is already in use")."""
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is already in use"
    if exc.errno == errno.EACCES:
        return f"port {port} needs privileges (use a port above 1023)"
    return f"cannot listen on port {port} ({exc.strerror or exc})"


async def maybe_start_metrics_server(runtime: Runtime) -> MetricsServer | None:
    """:func:`start_metrics_server` on ``METRICS_PORT``, or ``None`` when it is 0 (the default: off)."""
    port = runtime.settings.metrics_port
    if not port:
        return None
    return await start_metrics_server(runtime, port)


__all__ = ["MetricsServer", "bind_failure", "maybe_start_metrics_server", "metrics_app", "start_metrics_server"]
