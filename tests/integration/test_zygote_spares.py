"""The zygote's spares and its two-part syscall filter, against the real sandbox.

Children are forked ahead of their jobs and take exactly one; a spare that dies
before its job is skipped; the zygote runs under the common filter, and each child
adds its own (no uid changes, threads only, signals to itself only).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from executor.runner import RunRequest
from executor.zygote_runner import ZygoteRunner
from tests.poison import widget
from tests.sandbox import zygote_runner

PROBE = widget(
    """
import ctypes, errno, os, threading
def attempt(call):
    try:
        call()
        return "allowed"
    except PermissionError:
        return "denied"
    except OSError as exc:
        return f"failed: {exc}"
def sigqueue(pid):
    libc = ctypes.CDLL(None, use_errno=True)
    info = ctypes.create_string_buffer(128)
    info[8:12] = (-1).to_bytes(4, "little", signed=True)  # si_code = SI_QUEUE
    if libc.syscall(129, pid, 0, info) == 0:  # rt_sigqueueinfo, signal 0: the check alone
        return "allowed"
    return "denied" if ctypes.get_errno() == errno.EPERM else f"failed: {ctypes.get_errno()}"
found = []
worker = threading.Thread(target=lambda: found.append(threading.get_ident()))
worker.start()
worker.join()
return {"title": "probe", "items": [], "pid": os.getpid(), "uid": os.getuid(), "thread": bool(found),
        "kill_self": attempt(lambda: os.kill(os.getpid(), 0)),
        "kill_parent": attempt(lambda: os.kill(os.getppid(), 0)),
        "kill_init": attempt(lambda: os.kill(1, 0)),
        "kill_group": attempt(lambda: os.kill(0, 0)),
        "setuid": attempt(lambda: os.setuid(os.getuid())),
        "setgid": attempt(lambda: os.setgid(os.getgid())),
        "setgroups": attempt(lambda: os.setgroups([])),
        "fork": attempt(os.fork),
        "sigqueue_self": sigqueue(os.getpid()),
        "sigqueue_parent": sigqueue(os.getppid()),
        "batch": os.sched_getscheduler(0) == os.SCHED_BATCH}
"""
)


@pytest.fixture
async def runner() -> AsyncIterator[ZygoteRunner]:
    async with zygote_runner(60500, 4) as value:
        yield value


def _zygote_pid(runner: ZygoteRunner) -> int:
    zygote = runner._zygote
    assert zygote is not None
    return zygote.process.pid


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def _dead(pid: int) -> bool:
    """Gone, or a zombie: either way its fds are closed."""
    try:
        return _status(pid)["State"].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):  # reaped before, or while, /proc was read
        return True


async def _spares(runner: ZygoteRunner, count: int) -> list[int]:
    zygote = runner._zygote
    assert zygote is not None
    for _ in range(200):
        if len(zygote.spares) >= count:
            return list(zygote.spares)
        await asyncio.sleep(0.01)
    raise AssertionError(f"the zygote keeps {len(zygote.spares)} spares, not {count}")


async def test_the_child_filter_allows_threads_and_its_own_signals_only(runner: ZygoteRunner) -> None:
    outcome = await runner.run(RunRequest(code=PROBE, context={}, timeout_s=5))
    assert outcome.status == "ok", outcome.error_message
    value = outcome.value
    assert isinstance(value, dict)
    assert value["thread"] is True
    assert value["kill_self"] == "allowed"
    assert value["sigqueue_self"] == "allowed"
    assert value["uid"] >= 60500
    for call in ("kill_parent", "kill_init", "kill_group", "setuid", "setgid", "setgroups", "fork", "sigqueue_parent"):
        assert value[call] == "denied", (call, value[call])


async def test_widget_processes_never_preempt_a_service_when_woken(runner: ZygoteRunner) -> None:
    """SCHED_BATCH, inherited from the zygote: a job sent to a child does not stop the executor."""
    outcome = await runner.run(RunRequest(code=PROBE, context={}, timeout_s=5))
    assert isinstance(outcome.value, dict)
    assert outcome.value["batch"] is True
    assert os.sched_getscheduler(_zygote_pid(runner)) == os.SCHED_BATCH


async def test_the_zygote_itself_runs_under_the_common_filter(runner: ZygoteRunner) -> None:
    status = _status(_zygote_pid(runner))
    assert status["Seccomp"] == "2"
    assert status["NoNewPrivs"] == "1"


async def test_spares_wait_ahead_of_jobs_and_each_takes_one_job(runner: ZygoteRunner) -> None:
    spares = await _spares(runner, 4)
    pids = []
    for _ in range(6):
        outcome = await runner.run(RunRequest(code=PROBE, context={}, timeout_s=5))
        assert outcome.status == "ok", outcome.error_message
        assert isinstance(outcome.value, dict)
        pids.append(outcome.value["pid"])
    assert len(set(pids)) == 6, "a child is never reused"
    assert set(pids[:4]) == set(spares), "the first jobs went to the spares forked before them"
    for pid in spares:  # each ended with its job: none is left waiting or reused
        assert _dead(pid)


async def test_a_spare_that_dies_before_its_job_is_skipped_and_replaced(runner: ZygoteRunner) -> None:
    spares = await _spares(runner, 4)
    for pid in spares[:2]:
        os.kill(pid, signal.SIGKILL)
    zygote = runner._zygote
    assert zygote is not None
    for _ in range(200):  # the zygote reaps them and reports their exits
        if not set(spares[:2]) & set(zygote.spares):
            break
        await asyncio.sleep(0.01)
    assert not set(spares[:2]) & set(zygote.spares), "the executor still offers dead spares"
    outcomes = await asyncio.gather(*(runner.run(RunRequest(code=PROBE, context={}, timeout_s=5)) for _ in range(4)))
    assert [outcome.status for outcome in outcomes] == ["ok"] * 4, [o.error_message for o in outcomes]
    used = {outcome.value["pid"] for outcome in outcomes if isinstance(outcome.value, dict)}
    assert not used & set(spares[:2])
    assert len(await _spares(runner, 4)) == 4, "the zygote forks replacements"


async def test_a_spare_found_dead_at_dispatch_is_skipped(runner: ZygoteRunner) -> None:
    spares = await _spares(runner, 4)
    os.kill(spares[0], signal.SIGKILL)
    # Without yielding to the event loop, the executor has not heard of the death yet.
    deadline = time.monotonic() + 5
    while not _dead(spares[0]):
        assert time.monotonic() < deadline, "the killed spare did not die"
        time.sleep(0.001)  # noqa: ASYNC251 - yielding would let the executor hear of the death
    zygote = runner._zygote
    assert zygote is not None and spares[0] in zygote.spares
    outcome = await runner.run(RunRequest(code=PROBE, context={}, timeout_s=5))
    assert outcome.status == "ok", outcome.error_message
    assert isinstance(outcome.value, dict)
    assert outcome.value["pid"] == spares[1]


async def test_the_zygote_reports_the_thread_counter_and_landlock_scopes(runner: ZygoteRunner) -> None:
    layers = await runner.start()
    assert layers["thread_cap"] is True
    assert layers["landlock_scope"] is (layers["landlock_abi"] >= 6)
    assert layers["egress_guard"] is True
