"""Threads per widget process are counted by the executor, not by RLIMIT_NPROC: other
tasks of the widget's uid (the executor's own, other widgets', other pods') no longer
take a widget's threads away, and a widget still cannot start more than its cap."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest

from executor.runner import RunRequest
from executor.zygote_runner import ZygoteRunner
from tests.poison import widget
from tests.sandbox import zygote_runner

UID = 60800
POOL = widget(
    "from concurrent.futures import ThreadPoolExecutor\n"
    "with ThreadPoolExecutor(8) as pool:\n"
    "    squares = list(pool.map(lambda n: n * n, range(64)))\n"
    "return {'title': str(sum(squares)), 'items': []}"
)
FLOOD = widget(
    "import threading\n"
    "release, started = threading.Event(), []\n"
    "try:\n"
    "    for _ in range(200):\n"
    "        thread = threading.Thread(target=release.wait)\n"
    "        thread.start()\n"
    "        started.append(thread)\n"
    "except RuntimeError as exc:\n"
    "    refusal = str(exc)\n"
    "release.set()\n"
    "return {'title': refusal, 'items': [], 'started': len(started)}"
)


@pytest.fixture
def other_tasks_of_the_uid() -> Iterator[None]:
    """40 processes of the widget's uid, more than the old RLIMIT_NPROC of 32 allowed in all."""
    processes = [
        subprocess.Popen(["cat"], stdin=subprocess.PIPE, user=UID, group=65534, extra_groups=[]) for _ in range(40)
    ]
    try:
        yield
    finally:
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
        for process in processes:
            process.wait()


@pytest.fixture
async def runner() -> AsyncIterator[ZygoteRunner]:
    async with zygote_runner(UID, 1, threads=16) as value:
        yield value


@pytest.mark.usefixtures("other_tasks_of_the_uid")
async def test_a_thread_pool_works_however_many_tasks_its_uid_has(runner: ZygoteRunner) -> None:
    outcome = await runner.run(RunRequest(code=POOL, context={}, timeout_s=5))
    assert outcome.status == "ok", (outcome.error_message, outcome.logs)
    assert outcome.value == {"title": str(sum(n * n for n in range(64))), "items": []}


async def test_a_widget_cannot_start_more_threads_than_its_cap(runner: ZygoteRunner) -> None:
    outcome = await runner.run(RunRequest(code=FLOOD, context={}, timeout_s=5))
    assert outcome.status == "ok", (outcome.error_message, outcome.logs)
    assert isinstance(outcome.value, dict)
    assert outcome.value["title"] == "can't start new thread"
    assert outcome.value["started"] == 15, "the main thread and 15 more make the cap of 16"
