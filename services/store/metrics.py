"""The store's Prometheus metrics, on a registry owned by one app instance."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shared.metrics import LATENCY_BUCKETS, WIDGET_DURATION_BUCKETS, new_registry
from shared.mongo import CommandCounter

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

# The route label of requests that matched no route (404s, and 413s or cut-short 400s refused before routing).
UNMATCHED_ROUTE = "(unmatched)"


class StoreMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else new_registry()
        self.db_commands = CommandCounter(self.registry, "store")
        self.http_requests = Counter(
            "store_http_requests_total",
            "HTTP requests handled, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_request_duration = Histogram(
            "store_http_request_duration_seconds",
            "Time to handle one HTTP request, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.test_runs = Counter(
            "store_test_runs_total",
            "Run Test requests, by outcome (ok, error, timeout, no_answer).",
            ["status"],
            registry=self.registry,
        )
        self.test_run_duration = Histogram(
            "store_test_run_duration_seconds",
            "Time from publishing a test job to its reply (or giving up), by outcome.",
            ["status"],
            buckets=WIDGET_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.events_published = Counter(
            "store_events_published_total",
            "Events published to the sidebar exchange, by message type.",
            ["type"],
            registry=self.registry,
        )
        self.stream_clients = Gauge(
            "store_stream_clients",
            "Live stream (SSE) clients connected to this process.",
            registry=self.registry,
        )
        self.stream_bound_businesses = Gauge(
            "store_stream_bound_businesses",
            "Businesses this process's stream feed is bound for: with a stream open now or in the last 5 minutes.",
            registry=self.registry,
        )
        self.stream_events = Counter(
            "store_stream_events_total",
            "Events the stream hub took from the broker, by type (widget, sidebar, or invalid when dropped).",
            ["type"],
            registry=self.registry,
        )
        self.chat_messages = Counter(
            "store_chat_messages_total",
            "Customer messages posted through the public chat API.",
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, duration_s: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_request_duration.labels(route).observe(duration_s)

    def observe_test_run(self, status: str, duration_s: float) -> None:
        self.test_runs.labels(status).inc()
        self.test_run_duration.labels(status).observe(duration_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
