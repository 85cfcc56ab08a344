"""Prometheus plumbing: a registry per service, shared buckets, and the HTTP exporter."""

from __future__ import annotations

from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

# End-to-end sidebar latency: resolves 5 ms up to 30 s.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0,
)  # fmt: skip

# Widget execution: a no-op takes milliseconds, the hard limit is 30 s.
WIDGET_DURATION_BUCKETS = LATENCY_BUCKETS


def new_registry() -> CollectorRegistry:
    """Each service owns its registry, so tests and services never share global state."""
    return CollectorRegistry(auto_describe=True)


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Serve ``/metrics`` on a background thread; port 0 picks a free port."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)
