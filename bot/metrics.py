"""Prometheus metrics of one bot process (served on ``METRICS_PORT``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Each instance has its own registry, so tests and several cores don't collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("threadkeeper_messages", "Messages answered", ["platform"], registry=r)
        self.duplicates = Counter("threadkeeper_duplicates", "Redeliveries dropped by dedupe", registry=r)
        self.recoveries = Counter("threadkeeper_recoveries", "Threads silently recreated", ["reason"], registry=r)
        self.forgets = Counter("threadkeeper_forgets", "Threads forgotten on request", registry=r)
        self.feedback = Counter("threadkeeper_feedback", "Feedback buttons clicked under answers",
                                ["platform", "value"], registry=r)
        self.errors = Counter("threadkeeper_errors", "Errors by kind", ["kind"], registry=r)
        self.tokens = Counter("threadkeeper_tokens", "Assistant tokens", ["kind"], registry=r)
        self.latency = Histogram(
            "threadkeeper_assistant_latency_seconds",
            "Assistant call latency",
            buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.in_flight = Gauge("threadkeeper_in_flight", "Answers in progress", registry=r)
        self.platform_refused = Counter(
            "threadkeeper_platform_refused", "Platform calls refused by a rate limit (HTTP 429)",
            ["platform", "method"], registry=r,
        )
        self.answers_late = Counter(
            "threadkeeper_answers_late", "Answers delivered after the platform refused one of their calls",
            ["platform"], registry=r,
        )
        self.tool_calls = Counter(
            "threadkeeper_tool_calls", "Tool calls the model made (web_search, file_search, mcp:<server>)",
            ["tool", "outcome"], registry=r,
        )
        self.moderation_flagged = Counter(
            "threadkeeper_moderation_flagged", "Texts the moderation endpoint flagged", ["direction"], registry=r,
        )
        self.redactions = Counter("threadkeeper_redactions", "Matches redacted from user text", ["pattern"],
                                  registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
