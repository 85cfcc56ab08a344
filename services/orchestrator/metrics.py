"""Orchestrator metrics, registered on the service's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS, WIDGET_DURATION_BUCKETS


class OrchestratorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sidebar_latency = Histogram(
            "orchestrator_sidebar_latency_seconds",
            "From the event's occurred_at to publishing sidebar.ready (clamped at 0).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.first_card = Histogram(
            "orchestrator_first_card_seconds",
            "From the event's occurred_at to publishing its run's first sidebar.widget card (clamped at 0).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.events = Counter(
            "orchestrator_events_total",
            "conversation.opened events, by outcome (started, duplicate, taken_over, expired).",
            ["outcome"],
            registry=registry,
        )
        self.runs_in_flight = Gauge(
            "orchestrator_runs_in_flight", "Runs this replica owns and has not closed yet.", registry=registry
        )
        self.runs_abandoned = Counter(
            "orchestrator_runs_abandoned_total",
            "Runs dropped because the broker connection, and with it their event's delivery, was lost.",
            registry=registry,
        )
        self.jobs = Counter("orchestrator_jobs_published_total", "Widget jobs published.", registry=registry)
        self.results = Counter(
            "orchestrator_results_total",
            "Widget results received, by status and outcome (collected, ignored).",
            ["status", "outcome"],
            registry=registry,
        )
        self.widget_duration = Histogram(
            "orchestrator_widget_duration_seconds",
            "Widget execution time as reported in results, by status.",
            ["status"],
            buckets=WIDGET_DURATION_BUCKETS,
            registry=registry,
        )
        self.sidebars = Counter(
            "orchestrator_sidebars_published_total",
            "Sidebars published, by how they closed (complete, deadline, expired).",
            ["closed_by"],
            registry=registry,
        )
