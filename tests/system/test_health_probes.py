"""Acceptance: each service's probes, as deploy/k8s asks them. Liveness stays green while the
broker connection is down; readiness turns red, says why, and recovers with the connection.

The services run against a vhost of this test's own. The broker is held down for them, not
restarted: their user loses its permissions on the vhost and their connections are closed,
so every reconnect is refused until the permissions come back.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from tests.infra import Infra, provision_infra
from tests.system.harness import ServiceProcess, base_env, free_port, python_module
from tests.system.stack import ADMIN_KEY


@dataclass(frozen=True)
class Probed:
    process: ServiceProcess
    base_url: str

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=5)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


def _until(condition: Callable[[], bool], what: str, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.1)  # polling a probe, which has no event to wait on


def _answers(service: Probed, path: str, status: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return service.get(path).status_code == status
        except httpx.TransportError:
            return False

    return check


@pytest.fixture(scope="module")
def own_infra() -> Iterator[Infra]:
    with provision_infra() as infra:
        yield infra


@pytest.fixture(scope="module")
def services(own_infra: Infra) -> Iterator[dict[str, Probed]]:
    env = base_env({**own_infra.env(), "BROKER_RECONNECT_INTERVAL_S": "0.5", "EXECUTOR_CONCURRENCY": "2"})
    ports = {"store": free_port(), "orchestrator": free_port(), "executor": free_port()}
    started = {
        "store": python_module(
            "probes-store", "store", {**env, "STORE_ADMIN_KEY": ADMIN_KEY, "STORE_PORT": str(ports["store"])}
        ),
        "orchestrator": python_module(
            "probes-orchestrator", "orchestrator", {**env, "ORCHESTRATOR_METRICS_PORT": str(ports["orchestrator"])}
        ),
        "executor": python_module(
            "probes-executor", "executor", {**env, "EXECUTOR_METRICS_PORT": str(ports["executor"])}
        ),
    }
    probed = {name: Probed(process.start(), f"http://127.0.0.1:{ports[name]}") for name, process in started.items()}
    try:
        for service in probed.values():
            _until(_answers(service, "/readyz", 200), f"{service.process.name} is ready", within_s=60)
        yield probed
    finally:
        for service in probed.values():
            service.process.stop()


def test_every_service_is_live_and_ready_with_its_connections_up(services: dict[str, Probed]) -> None:
    for name, service in services.items():
        live, ready = service.get("/healthz"), service.get("/readyz")
        expected = {"serving": True, "broker": True} | ({} if name == "executor" else {"mongodb": True})
        assert (live.status_code, live.json()) == (200, {"status": "ok"}), name
        assert (ready.status_code, ready.json()) == (200, {"status": "ready", "checks": expected}), name


def test_a_lost_broker_connection_fails_readiness_not_liveness(services: dict[str, Probed], own_infra: Infra) -> None:
    url = urlsplit(own_infra.rabbitmq_url)
    vhost, user = unquote(url.path.lstrip("/")), url.username or "guest"
    _rabbitmqctl("clear_permissions", "-p", vhost, user)
    try:
        _rabbitmqctl("close_all_connections", "-p", vhost, "health probe test")
        for service in services.values():
            _until(_answers(service, "/readyz", 503), f"{service.process.name} is not ready")
            assert service.get("/readyz").json()["checks"]["broker"] is False
            assert service.get("/healthz").status_code == 200, "a lost broker is no reason to restart"
    finally:
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")

    for service in services.values():
        _until(_answers(service, "/readyz", 200), f"{service.process.name} is ready again")
