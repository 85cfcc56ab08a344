"""Acceptance (issue 3): the poison suite through the real broker and executor service.
All hostile jobs run side by side with healthy ones; each gets its precise status within
its timeout + 1 s, healthy results are unaffected, and the executor keeps serving."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra import Infra
from tests.poison import POISON
from tests.system.direct_jobs import HEALTHY, check_poison_suite, poison_suite, run_jobs
from tests.system.harness import ServiceProcess, base_env, free_port, python_module

TIMEOUT_S = 1.5


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
    results = await run_jobs(infra, poison_suite(), timeout_s=TIMEOUT_S, wait_s=30)
    check_poison_suite(results, TIMEOUT_S)
    for n in range(4):
        result, _ = results[f"healthy{n}"]
        assert result.duration_ms < 500, f"a healthy job took {result.duration_ms} ms beside the poison"
    again = await run_jobs(infra, {"after": HEALTHY}, timeout_s=TIMEOUT_S, wait_s=30)
    assert again["after"][0].status == "ok", "the executor keeps serving"


async def test_a_job_taken_after_its_expiry_is_not_run_and_reported_expired(
    infra: Infra, executor: ServiceProcess
) -> None:
    """Admission control at the executor: a job whose run has expired isn't worth its sandbox."""
    ran = "def get_sidebar_data(context):\n    print('ran')\n    return {'title': 'ran', 'items': []}\n"
    results = await run_jobs(infra, {"late": ran}, timeout_s=TIMEOUT_S, wait_s=30, expires_in_s=-1)
    result, _ = results["late"]
    assert (result.status, result.duration_ms, result.logs, result.data) == ("expired", 0, "", None)
    assert result.error is not None and result.error.type == "expired"
    executor.wait_for(lambda line: line.get("event") == "widget.finished" and line.get("status") == "expired")
