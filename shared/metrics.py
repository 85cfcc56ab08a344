"""Prometheus plumbing: a registry per service, shared buckets, and the HTTP exporter."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from shared.health import Health, probe_app

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


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Probes and scrapes every few seconds: no line each."""


def serve_metrics(registry: CollectorRegistry, host: str, port: int, *, health: Health | None = None) -> MetricsServer:
    """Serve ``/metrics`` (and, given ``health``, ``/healthz`` and ``/readyz``) on background
    threads, one per request, so a slow probe never holds up a scrape; port 0 picks a free port."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]

    class Server(ThreadingWSGIServer):
        address_family = family

    app = make_wsgi_app(registry)
    if health is not None:
        app = probe_app(health, app)
    server = make_server(str(address[0]), port, app, Server, _QuietHandler)
    thread = Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
