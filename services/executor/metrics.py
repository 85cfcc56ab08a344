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
        self.sandbox_overhead = Histogram(
            "executor_sandbox_overhead_seconds",
            "Per-job time outside widget code: fork, isolation set-up, pipes, teardown.",
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )
        self.kills = Counter(
            "executor_kills_total",
            "Widget processes stopped by a limit, by reason (timeout, memory, cpu, signal).",
            ["reason"],
            registry=registry,
        )
        self.workers = Counter(
            "executor_workers_total",
            "Widget jobs by the process that ran them: warm (a worker of the same widget, reused) or fresh.",
            ["start"],
            registry=registry,
        )
        self.worker_retirements = Counter(
            "executor_worker_retirements_total",
            "Warm-eligible widget processes killed, by reason (unclean, thread_left, max_jobs, idle, evicted, "
            "cpu_budget, cpu_between_jobs, egress_between_jobs, egress_denied, exited, died, unreachable, zygote_gone, "
            "shutdown).",
            ["reason"],
            registry=registry,
        )
        self.isolation_layer = Gauge(
            "executor_isolation_layer",
            "1 when an isolation layer is active in this executor's sandbox, else 0.",
            ["layer"],
            registry=registry,
        )
