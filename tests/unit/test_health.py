"""Probes answer from the event loop: liveness fails when the loop is blocked or gone,
readiness names each check, and a check that raises counts as failing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.health import Health, probe_app


def _metrics_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"metrics\n"]


async def _get(health: Health, path: str) -> httpx.Response:
    """A probe as the kubelet sends it, from another thread while this loop keeps running."""

    def get() -> httpx.Response:
        with httpx.Client(transport=httpx.WSGITransport(app=probe_app(health, _metrics_app)), base_url="http://x") as c:
            return c.get(path)

    return await asyncio.to_thread(get)


async def test_a_service_is_ready_once_serving_with_every_check_passing() -> None:
    health = Health()
    health.require("broker", lambda: True)
    assert (await _get(health, "/readyz")).status_code == 503, "not serving yet"

    health.start_serving()
    response = await _get(health, "/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"serving": True, "broker": True}}


async def test_readiness_names_the_failing_check_while_liveness_stays_green() -> None:
    connected = True
    health = Health()
    health.require("broker", lambda: connected)
    health.start_serving()

    connected = False
    ready, live = await _get(health, "/readyz"), await _get(health, "/healthz")

    assert ready.status_code == 503
    assert ready.json() == {"status": "not_ready", "checks": {"serving": True, "broker": False}}
    assert (live.status_code, live.json()) == (200, {"status": "ok"})


async def test_draining_is_not_ready() -> None:
    health = Health()
    health.start_serving()
    health.stop_serving()
    assert (await _get(health, "/readyz")).json()["checks"] == {"serving": False}


async def test_a_check_that_raises_fails_readiness_instead_of_the_probe() -> None:
    def broken() -> bool:
        raise OSError("cannot tell")

    health = Health()
    health.require("mongodb", broken)
    health.start_serving()

    response = await _get(health, "/readyz")

    assert (response.status_code, response.json()["checks"]["mongodb"]) == (503, False)


async def test_liveness_fails_while_the_event_loop_is_blocked() -> None:
    health = Health()
    health.start_serving()
    answers: list[dict[str, bool] | None] = []
    asking = threading.Thread(target=lambda: answers.append(health.ask_loop(timeout_s=0.2)))

    asking.start()
    time.sleep(0.5)  # noqa: ASYNC251 - blocking this loop is what the test is about
    asking.join()

    assert answers == [None]


def test_liveness_fails_once_the_event_loop_is_gone() -> None:
    async def make() -> Health:
        return Health()

    health = asyncio.run(make())

    assert health.ask_loop(timeout_s=0.2) is None


async def test_other_paths_reach_the_metrics_app() -> None:
    response = await _get(Health(), "/metrics")
    assert response.text == "metrics\n"


def test_health_needs_the_running_event_loop_it_will_be_asked_on() -> None:
    with pytest.raises(RuntimeError):
        Health()
