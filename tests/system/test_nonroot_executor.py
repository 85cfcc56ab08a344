"""Acceptance (issue 9): the executor as a non-root uid, as deploy/k8s runs it (uid 10002,
no capabilities), through the real broker: the poison suite gets its precise statuses, the
egress bypass corpus reaches none of the listeners the test owns, and a thread pool works
although the uid has more tasks than the old RLIMIT_NPROC of 32 allowed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.egress_corpus import ALLOWED, BYPASSES, Listeners, listeners
from tests.infra import Infra
from tests.poison import POISON, widget
from tests.system.direct_jobs import check_poison_suite, poison_suite, run_jobs
from tests.system.harness import ServiceProcess, base_env, free_port

UID = 10002  # deploy/k8s: runAsUser and runAsGroup of the executor
TIMEOUT_S = 1.5
POOL = widget(
    "from concurrent.futures import ThreadPoolExecutor\n"
    "with ThreadPoolExecutor(8) as pool:\n"
    "    return {'title': str(sum(pool.map(lambda n: n * n, range(64)))), 'items': []}"
)


@pytest.fixture(scope="module")
def owned() -> Iterator[Listeners]:
    with listeners() as value:
        yield value


@pytest.fixture(scope="module")
def other_tasks_of_the_uid() -> Iterator[None]:
    """Other processes of the executor's uid, as other pods of that uid on a node would be."""
    processes = [
        subprocess.Popen(["cat"], stdin=subprocess.PIPE, user=UID, group=UID, extra_groups=[]) for _ in range(40)
    ]
    yield
    for process in processes:
        assert process.stdin is not None
        process.stdin.close()
    for process in processes:
        process.wait()


@pytest.fixture(scope="module")
def executor(infra: Infra, owned: Listeners, other_tasks_of_the_uid: None) -> Iterator[ServiceProcess]:
    targets = owned.targets
    env = base_env(
        {
            **infra.env(),
            "HOME": "/",
            "EXECUTOR_CONCURRENCY": str(len(POISON) + 4),
            "EXECUTOR_METRICS_PORT": str(free_port()),
            "EXECUTOR_EGRESS_PORTS": ",".join(map(str, targets.egress_ports())),
            "EXECUTOR_EGRESS_ALLOW": ",".join(targets.egress_allow()),
        }
    )
    # setpriv drops to the uid with no capabilities left, what runAsUser with capabilities: drop ALL gives.
    argv = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]
    readable = subprocess.run(
        [*argv, sys.executable, "-c", "import executor.app"], env=env, capture_output=True, text=True, check=False
    )
    assert readable.returncode == 0, (
        f"uid {UID} cannot import the executor: the checkout and its .venv must be readable by other users, "
        f"as the sandbox uids need too (README, Dependencies).\n{readable.stderr[-2000:]}"
    )
    process = ServiceProcess("executor-nonroot", [*argv, sys.executable, "-m", "executor"], env).start()
    process.wait_for(lambda line: line.get("event") == "executor.started")
    yield process
    process.stop()


def test_the_executor_runs_as_the_uid_without_uid_slots(executor: ServiceProcess) -> None:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{executor.pid}/status").read_text().splitlines())
    assert status["Uid"].split() == [str(UID)] * 4
    assert status["CapEff"].strip() == "0000000000000000"
    layers = executor.wait_for(lambda line: line.get("event") == "sandbox.layers")[0]
    assert layers["uid_per_slot"] is False
    assert layers["seccomp"] is True and layers["landlock"] is True and layers["egress_guard"] is True


async def test_poison_jobs_fail_alone(infra: Infra, executor: ServiceProcess) -> None:
    results = await run_jobs(infra, poison_suite() | {"pool": POOL}, timeout_s=TIMEOUT_S)
    check_poison_suite(results, TIMEOUT_S)
    pool = results["pool"][0]
    assert pool.status == "ok", pool.error
    assert pool.data is not None and pool.data.title == str(sum(n * n for n in range(64)))


async def test_no_bypass_reaches_a_listener_of_the_test(
    infra: Infra, executor: ServiceProcess, owned: Listeners
) -> None:
    targets = owned.targets
    names = {f"bypass{n}": name for n, name in enumerate(BYPASSES)}
    results = await run_jobs(
        infra, {widget_id: targets.code(BYPASSES[name][0]) for widget_id, name in names.items()}, timeout_s=TIMEOUT_S
    )
    assert owned.reached() == []
    for widget_id, name in names.items():
        _, error_type, named = BYPASSES[name]
        result = results[widget_id][0]
        if error_type is None:
            assert result.status == "ok", (name, result.error)
        else:
            assert result.error is not None and result.error.type == error_type, (name, result.error)
            assert targets.text(named) in result.error.message, (name, result.error.message)


async def test_allowed_traffic_flows(infra: Infra, executor: ServiceProcess, owned: Listeners) -> None:
    names = {f"allowed{n}": name for n, name in enumerate(ALLOWED)}
    results = await run_jobs(
        infra, {widget_id: owned.targets.code(ALLOWED[name]) for widget_id, name in names.items()}, timeout_s=TIMEOUT_S
    )
    for widget_id, name in names.items():
        result = results[widget_id][0]
        assert result.status == "ok", (name, result.error)
        assert result.data is not None and result.data.title == "200"
    assert owned.reached() == []
