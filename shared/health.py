"""Health probes: liveness is the event loop answering, readiness is the service's connections.

Every service answers ``GET /healthz`` (liveness) and ``GET /readyz`` (readiness). Readiness
reads state the clients keep anyway, aio-pika's connection state and PyMongo's topology
description (refreshed by the driver's own background monitor), so a probe costs no round
trip to the broker or the database. The orchestrator and the executor serve both from the
metrics server's threads, which ask the event loop for the answer: a loop that is blocked
or gone fails liveness, even though the thread itself could still answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Callable, Iterable
from typing import Any

from pymongo import AsyncMongoClient

Check = Callable[[], bool]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
# Below the probes' timeoutSeconds (3) in deploy/k8s, so the answer names the cause.
LOOP_ANSWER_TIMEOUT_S = 2.0


class Health:
    """Named readiness checks, read on the event loop; ``serving`` is the service's own part:
    set once it consumes (or serves requests), cleared when it starts to drain."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._checks: dict[str, Check] = {}
        self._serving = False

    def require(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def start_serving(self) -> None:
        self._serving = True

    def stop_serving(self) -> None:
        self._serving = False

    def checks(self) -> dict[str, bool]:
        return {"serving": self._serving} | {name: _passes(check) for name, check in self._checks.items()}

    def ask_loop(self, timeout_s: float = LOOP_ANSWER_TIMEOUT_S) -> dict[str, bool] | None:
        """From another thread: the checks as the event loop reads them, or None when the
        loop does not answer within ``timeout_s`` (blocked, or closed)."""
        answer: concurrent.futures.Future[dict[str, bool]] = concurrent.futures.Future()

        def on_loop() -> None:
            if answer.set_running_or_notify_cancel():
                answer.set_result(self.checks())

        try:
            self._loop.call_soon_threadsafe(on_loop)
            return answer.result(timeout=timeout_s)
        except (RuntimeError, concurrent.futures.TimeoutError):
            answer.cancel()
            return None


def _passes(check: Check) -> bool:
    try:
        return check()
    except Exception:  # noqa: BLE001 - a check that cannot tell is a check that fails, never a crashed probe
        return False


def mongo_reachable(client: AsyncMongoClient[Any]) -> Check:
    """A primary (or standalone) is known to the driver: its monitor's last heartbeat
    reached it. Before the client's first operation nothing is known, so this is False."""
    return lambda: client.topology_description.has_writable_server()


def readiness(checks: dict[str, bool]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body of ``/readyz``."""
    ready = all(checks.values())
    return (200 if ready else 503), {"status": "ready" if ready else "not_ready", "checks": checks}


def probe_app(health: Health, fallback: WsgiApp) -> WsgiApp:
    """A WSGI app answering the two probes through the event loop, and anything else with ``fallback``."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in (LIVENESS_PATH, READINESS_PATH):
            return fallback(environ, start_response)
        checks = health.ask_loop()
        if checks is None:
            status, body = 503, {"status": "unresponsive", "detail": "the event loop did not answer"}
        elif path == LIVENESS_PATH:
            status, body = 200, {"status": "ok"}
        else:
            status, body = readiness(checks)
        payload = json.dumps(body).encode()
        start_response(
            f"{status} {'OK' if status == 200 else 'Service Unavailable'}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    return app
