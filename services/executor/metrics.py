"""Executor metrics, registered on the service's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics import WIDGET_DURATION_BUCKETS


class ExecutorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Counter(
            "executor_jobs_total",
            "Widget jobs finished, by purpose and status.",
            ["purpose", "status"],
            registry=registry,
        )
        self.widget_duration = Histogram(
            "executor_widget_duration_seconds",
            "Wall time of one widget execution, including process start, by status.",
            ["status"],
            buckets=WIDGET_DURATION_BUCKETS,
            registry=registry,
        )
        self.results = Counter(
            "executor_results_published_total", "Results published, by purpose.", ["purpose"], registry=registry
        )
        self.in_flight = Gauge("executor_jobs_in_flight", "Widget jobs running now.", registry=registry)
