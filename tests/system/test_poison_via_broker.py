"""Acceptance (issue 3): the poison suite through the real broker and executor service.
All hostile jobs run side by side with healthy ones; each gets its precise status within
its timeout + 1 s, healthy results are unaffected, and the executor keeps serving."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra import Infra
from tests.poison import POISON, widget
from tests.system.direct_jobs import run_jobs
from tests.system.harness import ServiceProcess, base_env, free_port, python_module

TIMEOUT_S = 1.5
HEALTHY = "def get_sidebar_data(context):\n    print('healthy')\n    return {'title': 'ok', 'items': []}\n"


@pytest.fixture(scope="module")
def executor(infra: Infra) -> Iterator[ServiceProcess]:
    env = base_env(
        {**infra.env(), "EXECUTOR_CONCURRENCY": str(len(POISON) + 4), "EXECUTOR_METRICS_PORT": str(free_port())}
    )
    process = python_module("executor-poison", "executor", env).start()
    process.wait_for(lambda line: line.get("event") == "executor.started")
    yield process
    process.stop()


async def test_poison_jobs_fail_alone_through_the_broker(infra: Infra, executor: ServiceProcess) -> None:
    names = {f"poison{n}": name for n, name in enumerate(POISON)}
    jobs = {widget_id: widget(POISON[name][0]) for widget_id, name in names.items()}
    jobs |= {f"healthy{n}": HEALTHY for n in range(4)}
    results = await run_jobs(infra, jobs, timeout_s=TIMEOUT_S, wait_s=30)
    for widget_id, name in names.items():
        result, took = results[widget_id]
        _, status, error_type = POISON[name]
        assert result.status == (status if status == "timeout" else "error"), (name, result.error)
        assert result.error is not None and result.error.type == error_type, (name, result.error)
        assert took < TIMEOUT_S + 1, f"{name} answered after {took:.2f} s"
    for n in range(4):
        result, took = results[f"healthy{n}"]
        assert result.status == "ok"
        assert result.logs == "healthy\n"
        assert result.duration_ms < 500, f"a healthy job took {result.duration_ms} ms beside the poison"
    again = await run_jobs(infra, {"after": HEALTHY}, timeout_s=TIMEOUT_S, wait_s=30)
    assert again["after"][0].status == "ok", "the executor keeps serving"
