"""Helpers shared by tests (Samples, scrape)."""

from __future__ import annotations

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from bot.ops.metrics_http import MetricsServer

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

async def scrape(http: aiohttp.ClientSession, server: MetricsServer) -> Samples:
    async with http.get(f"http://127.0.0.1:{server.port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples
