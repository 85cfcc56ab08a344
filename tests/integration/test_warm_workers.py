"""Warm workers against the real sandbox: a process that ran a widget's job cleanly takes
the next jobs of the same business, widget and code, and nobody else's; anything unclean
ends it. Reuse is asserted by the worker's pid, never by timing."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from executor.jobs import JobHandler
from executor.metrics import ExecutorMetrics
from executor.runner import RunOutcome, RunRequest
from executor.worker_lifecycle import cpu_seconds_of
from executor.workers import Worker
from executor.zygote_runner import ZygoteRunner
from shared.broker import Broker
from shared.consumer import Delivery
from shared.contracts.events import EventContext
from shared.contracts.jobs import WidgetJob
from shared.metrics import new_registry
from shared.topology import WIDGET_JOB_KEY
from tests.poison import widget
from tests.sandbox import zygote_runner

UID = 60900
PID = widget(
    """
import os
return {"title": "pid", "items": [], "pid": os.getpid()}
"""
)
# One code for every behaviour a test needs, so that every job of it has the same key.
MULTI = widget(
    """
import os, resource, socket, threading, time
action = context.get("action")
if action == "sleep":
    time.sleep(60)
if action == "leave a thread":
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
if action == "burn":
    end = time.process_time() + context["seconds"]
    while time.process_time() < end:
        pass
if action == "burn to":  # until the process has used this much CPU in all
    while time.process_time() < context["seconds"]:
        pass
if action == "spin":
    while True:
        pass
if action == "keep a pipe":
    import sys
    sys.kept = os.dup(1)  # a copy of the log pipe, which only the process's exit can close now
if action == "connect":
    socket.create_connection(("127.0.0.1", context["port"]), 2).close()
try:
    token = secret("token")
except Exception as exc:
    token = type(exc).__name__
soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
return {"title": "multi", "items": [], "pid": os.getpid(), "token": token, "cpu_soft": soft, "cpu_hard": hard}
"""
)
GLOBALS = """
try:
    seen = STATE
except NameError:
    seen = None
STATE = "set by an earlier job"

def get_sidebar_data(context):
    global LATER
    try:
        later = LATER
    except NameError:
        later = None
    LATER = "set by an earlier call"
    import os
    return {"title": "globals", "items": [], "pid": os.getpid(), "seen": seen, "later": later,
            "helpers": sorted(name for name in ("log", "secret") if name in __builtins__)}
"""


def _dead(pid: int) -> bool:
    """Gone, or a zombie: it runs no job."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in status


def _stopped(pid: int) -> bool:
    return "\nState:\tT" in Path(f"/proc/{pid}/status").read_text()


async def _until(holds: Callable[[int], bool], pid: int) -> None:
    """Wait for ``holds(pid)``: at most 5 s, which a loaded machine needs, polled every 10 ms."""
    for _ in range(500):
        if holds(pid):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"process {pid}: {holds.__name__.strip('_')} did not come true")


def _idle_worker(runner: ZygoteRunner) -> Worker:
    [idle] = runner._pool.idle
    return idle


async def _run(
    runner: ZygoteRunner,
    code: str = MULTI,
    *,
    business: str = "b1",
    widget_id: str = "w1",
    timeout_s: float = 5,
    secrets: dict[str, str] | None = None,
    **context: Any,
) -> RunOutcome:
    request = RunRequest(
        code=code,
        context=context,
        timeout_s=timeout_s,
        secrets=secrets or {},
        business_id=business,
        widget_id=widget_id,
    )
    return await runner.run(request)


def _pid(outcome: RunOutcome) -> int:
    assert outcome.status == "ok", (outcome.error_type, outcome.error_message, outcome.logs)
    assert isinstance(outcome.value, dict)
    return int(outcome.value["pid"])


@pytest.fixture
async def runner() -> AsyncIterator[ZygoteRunner]:
    async with zygote_runner(UID, 4) as value:
        yield value


async def test_jobs_of_the_same_widget_reuse_its_worker(runner: ZygoteRunner) -> None:
    outcomes = [await _run(runner) for _ in range(4)]
    assert len({_pid(outcome) for outcome in outcomes}) == 1
    assert [outcome.worker_start for outcome in outcomes] == ["fresh", "warm", "warm", "warm"]


async def test_another_widget_or_business_never_gets_the_worker(runner: ZygoteRunner) -> None:
    worker = _pid(await _run(runner))
    others = [
        await _run(runner, widget_id="w2"),
        await _run(runner, business="b2"),
        await _run(runner, business="b2", widget_id="w2"),
    ]
    assert worker not in {_pid(outcome) for outcome in others}
    assert _pid(await _run(runner)) == worker, "the worker was idle all along, kept for its own widget"


async def test_changed_code_gets_a_fresh_worker(runner: ZygoteRunner) -> None:
    worker = _pid(await _run(runner))
    changed = await _run(runner, MULTI + "# edited\n")
    assert _pid(changed) != worker
    assert changed.worker_start == "fresh"


async def test_jobs_without_a_business_and_widget_are_never_reused(runner: ZygoteRunner) -> None:
    pids = [_pid(await runner.run(RunRequest(code=PID, context={}, timeout_s=5))) for _ in range(3)]
    assert len(set(pids)) == 3
    for pid in pids:
        await _until(_dead, pid)


async def test_module_globals_do_not_carry_over_to_the_next_job(runner: ZygoteRunner) -> None:
    first, second = await _run(runner, GLOBALS), await _run(runner, GLOBALS)
    assert _pid(first) == _pid(second)
    for outcome in (first, second):
        assert isinstance(outcome.value, dict)
        assert outcome.value["seen"] is None
        assert outcome.value["later"] is None
        assert outcome.value["helpers"] == ["log", "secret"]


async def test_secrets_of_one_job_are_not_visible_to_the_next(runner: ZygoteRunner) -> None:
    first = await _run(runner, secrets={"token": "first job's"})
    second = await _run(runner, secrets={"other": "second job's"})
    assert _pid(first) == _pid(second)
    assert isinstance(first.value, dict) and isinstance(second.value, dict)
    assert first.value["token"] == "first job's"
    assert second.value["token"] == "MissingSecret"


async def test_a_timeout_kills_the_worker_and_the_next_job_gets_a_fresh_one(runner: ZygoteRunner) -> None:
    worker = _pid(await _run(runner))
    stopped = await _run(runner, action="sleep", timeout_s=1)
    assert stopped.status == "timeout"
    await _until(_dead, worker)
    after = await _run(runner)
    assert _pid(after) != worker
    assert after.worker_start == "fresh"


async def test_a_widget_that_leaves_a_thread_behind_gets_its_worker_retired(runner: ZygoteRunner) -> None:
    worker = _pid(await _run(runner, action="leave a thread"))
    await _until(_dead, worker)
    after = await _run(runner)
    assert _pid(after) != worker
    assert after.worker_start == "fresh"


async def test_a_failing_widget_keeps_its_worker_but_a_memory_error_does_not(runner: ZygoteRunner) -> None:
    code = widget("import os\nif context.get('hog'):\n    hog = bytearray(10 ** 9)\nraise ValueError(os.getpid())")
    raised = await _run(runner, code)
    assert raised.error_type == "exception", raised.error_message
    again = await _run(runner, code)
    assert (again.worker_start, again.error_message) == ("warm", raised.error_message)
    hog = await _run(runner, code, hog=True)
    assert hog.error_type == "memory", hog.error_message
    assert (await _run(runner, code)).worker_start == "fresh"


async def test_the_cpu_limit_still_stops_a_cpu_bound_widget_on_a_reused_worker() -> None:
    """Each job gets its CPU seconds past what the worker has spent, under a hard limit set once."""
    async with zygote_runner(UID, 1, job_cpu_seconds=1) as runner:
        burns = [await _run(runner, action="burn", seconds=0.6, timeout_s=30) for _ in range(2)]
        assert len({_pid(outcome) for outcome in burns}) == 1, "1.2 s in all, past one job's second: still reused"
        limits = [(outcome.value["cpu_soft"], outcome.value["cpu_hard"]) for outcome in burns]  # type: ignore[index]
        assert limits[0] == (1, 4), limits
        assert limits[1][1] == 4 and limits[1][0] >= 2, limits
        spun = await _run(runner, action="spin", timeout_s=30)
        assert (spun.status, spun.error_type, spun.worker_start) == ("error", "cpu_limit", "warm")
        assert (await _run(runner)).worker_start == "fresh"


async def test_a_worker_is_retired_once_its_cpu_budget_cannot_cover_a_job() -> None:
    """Hard limit 4 s; a job may need its second and one more: after 0.5 and 1.5 s of CPU
    there is room (2.5, 3.5 s), after 2.5 s there is not (4.5 s). Half a second of margin each way."""
    reasons: list[str] = []
    async with zygote_runner(UID, 1, reasons.append, job_cpu_seconds=1) as runner:
        pids = [_pid(await _run(runner, action="burn to", seconds=total, timeout_s=30)) for total in (0.5, 1.5, 2.5)]
        after = await _run(runner)
    assert len(set(pids)) == 1, pids
    assert (after.worker_start, reasons[0]) == ("fresh", "cpu_budget"), reasons


async def test_a_workers_cpu_budget_does_not_shrink_with_its_first_jobs_timeout() -> None:
    """A job that waited in the queue gets a clipped timeout: the worker it starts still gets
    the budget of four of the longest jobs (4 x 31 s)."""
    async with zygote_runner(UID, 1) as runner:
        short = await _run(runner, timeout_s=0.5)
    assert _pid(short)
    assert isinstance(short.value, dict)
    assert (short.value["cpu_soft"], short.value["cpu_hard"]) == (1, 124)


@pytest.fixture
def listeners() -> Iterator[tuple[socket.socket, socket.socket]]:
    allowed, forbidden = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
    forbidden.setblocking(False)
    try:
        yield allowed, forbidden
    finally:
        allowed.close()
        forbidden.close()


async def test_egress_works_on_a_reused_worker_and_the_policy_still_refuses(
    listeners: tuple[socket.socket, socket.socket],
) -> None:
    allowed, forbidden = listeners
    allowed_port, forbidden_port = allowed.getsockname()[1], forbidden.getsockname()[1]
    async with zygote_runner(UID, 2, egress_allow=(f"127.0.0.1:{allowed_port}",)) as runner:
        first = await _run(runner, action="connect", port=allowed_port)
        second = await _run(runner, action="connect", port=allowed_port)
        assert _pid(first) == _pid(second)
        assert second.worker_start == "warm"
        refused = await _run(runner, action="connect", port=forbidden_port)
        assert refused.worker_start == "warm"
        assert refused.error_type == "egress_denied", refused.error_message
        assert f"127.0.0.1:{forbidden_port}" in (refused.error_message or "")
        with pytest.raises(BlockingIOError):
            forbidden.accept()  # nothing reached it
        after = await _run(runner, action="connect", port=allowed_port)
        assert after.worker_start == "fresh", "a refusal retires the worker"


async def test_reuse_can_be_turned_off() -> None:
    async with zygote_runner(UID, 2, warm_workers=False) as runner:
        outcomes = [await _run(runner) for _ in range(3)]
    assert len({_pid(outcome) for outcome in outcomes}) == 3
    assert {outcome.worker_start for outcome in outcomes} == {"fresh"}


async def test_a_worker_is_retired_after_its_maximum_of_jobs() -> None:
    async with zygote_runner(UID, 2, warm_max_jobs=2) as runner:
        pids = [_pid(await _run(runner)) for _ in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]


async def test_an_idle_worker_is_retired_after_its_idle_time() -> None:
    async with zygote_runner(UID, 2, warm_idle_s=0.2) as runner:
        worker = _pid(await _run(runner))
        await _until(_dead, worker)
        after = await _run(runner)
        assert after.worker_start == "fresh"


async def test_a_job_with_no_free_slot_evicts_the_idle_worker_of_another_widget() -> None:
    async with zygote_runner(UID, 1) as runner:
        worker = _pid(await _run(runner))
        other = await _run(runner, widget_id="w2")
        assert _pid(other) != worker
        await _until(_dead, worker)
        assert _pid(await _run(runner, widget_id="w2")) == _pid(other), "the newcomer is warm in its turn"


async def test_a_worker_keeps_its_uid_slot_and_concurrent_jobs_of_one_widget_get_workers_of_their_own(
    runner: ZygoteRunner,
) -> None:
    code = widget(
        "import os, time\ntime.sleep(0.3)\nreturn {'title': 't', 'items': [], 'pid': os.getpid(), 'uid': os.getuid()}"
    )
    first = await asyncio.gather(*(_run(runner, code) for _ in range(3)))
    second = await asyncio.gather(*(_run(runner, code) for _ in range(3)))
    pids = {_pid(outcome) for outcome in first}
    assert len(pids) == 3
    assert {_pid(outcome) for outcome in second} == pids
    uids = {(o.value["pid"], o.value["uid"]) for o in (*first, *second) if isinstance(o.value, dict)}
    assert len(uids) == 3, "each worker kept its uid"


# A POSIX timer (timer_create), which the worker's own step between jobs does not cancel,
# with a Python handler: it would run whenever the timer fires.
TIMER = widget(
    """
import ctypes, os, signal, sys
if context.get("arm"):
    sys.ticks = 0
    def tick(signum, frame, sys=sys):
        sys.ticks += 1
    signal.signal(signal.SIGUSR1, tick)
    class sigevent(ctypes.Structure):
        _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int), ("notify", ctypes.c_int),
                    ("pad", ctypes.c_byte * 48)]
    class itimerspec(ctypes.Structure):
        _fields_ = [("interval_s", ctypes.c_long), ("interval_ns", ctypes.c_long),
                    ("value_s", ctypes.c_long), ("value_ns", ctypes.c_long)]
    libc = ctypes.CDLL(None, use_errno=True)
    event, timer = sigevent(signo=signal.SIGUSR1, notify=0), ctypes.c_void_p()  # SIGEV_SIGNAL
    assert libc.timer_create(1, ctypes.byref(event), ctypes.byref(timer)) == 0, ctypes.get_errno()
    every = itimerspec(0, 10_000_000, 0, 10_000_000)  # CLOCK_MONOTONIC, every 10 ms
    assert libc.timer_settime(timer, 0, ctypes.byref(every), None) == 0, ctypes.get_errno()
return {"title": "timer", "items": [], "pid": os.getpid()}
"""
)


async def test_an_idle_worker_is_stopped_until_its_next_job() -> None:
    """No widget code runs while a worker has no job, a timer's handler included: the executor
    stops its process group (SIGSTOP) when it parks it and continues it with the next job."""
    reasons: list[str] = []
    async with zygote_runner(UID, 1, reasons.append) as runner:
        worker = _pid(await _run(runner, TIMER, arm=True))
        await _until(_stopped, worker)
        assert cpu_seconds_of(worker) == pytest.approx(_idle_worker(runner).cpu_used_s, abs=0.05)
        after = await _run(runner, TIMER)
        assert (_pid(after), after.worker_start) == (worker, "warm")
        await _until(_stopped, worker)
    assert reasons == ["shutdown"], "SIGKILL ends a stopped worker like any other"


async def test_an_idle_worker_dies_with_a_killed_zygote() -> None:
    """Stopped, it would never see its channel close: the kernel kills it with its parent,
    even when no executor is left to retire it (the event loop is not given a turn here)."""
    async with zygote_runner(UID, 1) as runner:
        worker = _pid(await _run(runner))
        await _until(_stopped, worker)
        zygote = runner._zygote
        assert zygote is not None
        zygote.process.kill()
        for _ in range(500):
            if _dead(worker):
                break
            time.sleep(0.01)  # noqa: ASYNC251 - on purpose: the executor must not get to clean up
        assert _dead(worker), f"idle worker {worker} outlived its zygote"


# Widget code that runs after its result, in place of the worker's own step between jobs:
# it stops itself first, so that it goes on only once the test continues it, as if the
# executor's SIGSTOP had come too late. Then it burns CPU, or asks for a connection.
SNEAK = widget(
    """
import os, signal, socket
import executor.sandbox.child as worker_loop
def sneak(between_jobs=worker_loop._between_jobs, action=context.get("tamper"), port=context.get("port")):
    worker_loop._between_jobs = between_jobs  # once
    between_jobs()
    os.kill(os.getpid(), signal.SIGSTOP)
    if action == "connect":
        socket.create_connection(("127.0.0.1", port), 30).close()
    while action == "burn":
        pass
if context.get("tamper"):
    worker_loop._between_jobs = sneak
return {"title": "sneak", "items": [], "pid": os.getpid()}
"""
)


def _accept_all(listener: socket.socket) -> int:
    accepted = 0
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return accepted
        connection.close()
        accepted += 1


def _asked_for_a_connection(idle: Worker) -> bool:
    try:
        return bool(idle.channel.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False


@pytest.mark.parametrize(("tamper", "reason"), [("burn", "cpu_between_jobs"), ("connect", "egress_between_jobs")])
async def test_a_worker_that_ran_while_idle_is_retired_and_its_connection_never_made(
    listeners: tuple[socket.socket, socket.socket], tamper: str, reason: str
) -> None:
    allowed, _ = listeners
    allowed.setblocking(False)
    port = allowed.getsockname()[1]
    reasons: list[str] = []
    async with zygote_runner(UID, 1, reasons.append, egress_allow=(f"127.0.0.1:{port}",)) as runner:
        worker = _pid(await _run(runner, SNEAK, port=port, tamper=tamper))
        idle = _idle_worker(runner)
        for _ in range(3000):  # continued (maybe more than once: the executor's stop and its own), until it has run
            if (cpu_seconds_of(worker) or 0.0) > idle.cpu_used_s + 0.2 or _asked_for_a_connection(idle):
                break
            if _stopped(worker):
                os.kill(worker, signal.SIGCONT)
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the worker did not run between jobs")
        with capture_logs() as logs:
            after = await _run(runner, SNEAK, port=port)
        assert (after.status, after.worker_start) == ("ok", "fresh")
        assert _pid(after) != worker
    assert reasons[0] == reason, reasons
    assert [entry["event"] for entry in logs if entry["event"].endswith("_between_jobs")] == [f"sandbox.{reason}"]
    assert _accept_all(allowed) == 0, "the request was dropped, not served"


# The worker's own step before it waits for a job, replaced once: it records the worker
# loop's local variables, which the next job returns.
PEEK = widget(
    """
import os, sys
import executor.sandbox.child as worker_loop
if context.get("tamper"):
    def peek(channel, wait=worker_loop._await_assignment, sys=sys, repr=repr):
        worker_loop._await_assignment = wait
        sys.idle_locals = repr(sys._getframe(1).f_locals)
        return wait(channel)
    worker_loop._await_assignment = peek
return {"title": "peek", "items": [], "pid": os.getpid(), "idle": getattr(sys, "idle_locals", None)}
"""
)


async def test_an_idle_worker_holds_no_request_of_its_last_job() -> None:
    """Its context and secrets are dropped before the worker waits (a rotated secret comes with the next request)."""
    async with zygote_runner(UID, 1) as runner:
        first = await _run(
            runner, PEEK, tamper=True, secrets={"token": "first-job-secret"}, customer="first-job-context"
        )
        second = await _run(runner, PEEK, secrets={"token": "rotated"})
    assert _pid(first) == _pid(second)
    assert isinstance(second.value, dict) and second.value["idle"], second.value
    for kept in ("first-job-secret", "first-job-context", "'request'", "'assignment'"):
        assert kept not in second.value["idle"], (kept, second.value["idle"])


async def test_a_cancelled_job_kills_its_worker_and_frees_its_slot() -> None:
    async with zygote_runner(UID, 1) as runner:
        worker = _pid(await _run(runner))
        job = asyncio.create_task(_run(runner, action="sleep", timeout_s=30))
        for _ in range(500):  # until the worker has left the pool for the job
            if not runner._pool.idle:
                break
            await asyncio.sleep(0.01)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        await _until(_dead, worker)
        after = await asyncio.wait_for(_run(runner), 10)
        assert (after.status, after.worker_start) == ("ok", "fresh"), "the only slot is free again"


async def test_a_widget_that_keeps_a_copy_of_its_pipes_gets_its_result_and_its_worker_ends() -> None:
    """It exits to close the copy: an exiting or zombie process is never parked."""
    reasons: list[str] = []
    async with zygote_runner(UID, 2, reasons.append) as runner:
        for _ in range(3):
            kept = await _run(runner, action="keep a pipe", timeout_s=10)
            worker = _pid(kept)
            await _until(_dead, worker)
            after = await _run(runner)
            assert _pid(after) != worker
            assert after.worker_start == "fresh"
            assert reasons.pop(0) == "exited", reasons


async def test_the_job_handler_counts_warm_and_fresh_workers_and_retirements(broker: Broker) -> None:
    registry = new_registry()
    metrics = ExecutorMetrics(registry)
    delivery = Delivery(routing_key=WIDGET_JOB_KEY, attempt=1, reply_to="nobody.listens", correlation_id=None)
    async with zygote_runner(UID, 2, lambda reason: metrics.worker_retirements.labels(reason).inc()) as runner:
        handler = JobHandler(runner=runner, broker=broker, metrics=metrics)
        for n, code in enumerate([MULTI, MULTI, MULTI, widget("import time\ntime.sleep(60)")]):
            job = WidgetJob(
                job_id=f"job{n}", run_id="run", purpose="sidebar", business_id="b1", conversation_id="c1",
                widget_id="w1" if n < 3 else "w2", widget_name="w", code=code, timeout_s=1 if n == 3 else 5,
                context=EventContext(conversation={"id": "c1"}, customer=None, business={"id": "b1"}),
                expires_at=datetime.now(UTC) + timedelta(seconds=60),
            )  # fmt: skip
            await handler(job, delivery)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("executor_workers_total", start="fresh") == 2
    assert sample("executor_workers_total", start="warm") == 2
    assert sample("executor_worker_retirements_total", reason="unclean") == 1  # the timeout
    assert sample("executor_worker_retirements_total", reason="shutdown") == 1  # w1's worker, idle at the end


CONNECT_THEN_SLEEP = widget(
    """
import socket, time
kept = socket.create_connection(("127.0.0.1", context["port"]), 2)
time.sleep(60)
"""
)
NOISY = widget(
    """
print("x" * 200_000)
return {"title": "noisy", "items": []}
"""
)


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


async def test_every_pipe_of_a_job_is_closed_however_the_job_ends(
    listeners: tuple[socket.socket, socket.socket],
) -> None:
    allowed, _ = listeners
    allowed.setblocking(False)
    port = allowed.getsockname()[1]
    before = _open_fds()
    async with zygote_runner(UID, 2, egress_allow=(f"127.0.0.1:{port}",)) as runner:
        assert (await _run(runner)).status == "ok"
        assert (await _run(runner, action="sleep", timeout_s=0.5)).status == "timeout"
        noisy = await _run(runner, NOISY, widget_id="noisy")
        assert noisy.status == "ok" and noisy.logs_truncated
        assert (await _run(runner, widget("import os\nos._exit(3)"), widget_id="exits")).error_type == "crashed"
        # Cancelled while its widget runs (it has connected: its pipes are open).
        running = asyncio.create_task(_run(runner, CONNECT_THEN_SLEEP, widget_id="sleeper", port=port, timeout_s=30))
        loop = asyncio.get_running_loop()
        connection, _ = await asyncio.wait_for(loop.sock_accept(allowed), 10)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        connection.close()
    assert _open_fds() == before


async def test_an_outcome_carries_the_widgets_own_time_within_the_jobs(runner: ZygoteRunner) -> None:
    burnt = await _run(runner, action="burn", seconds=0.05)
    failed = await _run(runner, widget("raise ValueError('no')"), widget_id="fails")
    for outcome in (burnt, failed):
        assert outcome.widget_s is not None, outcome
        assert 0 < outcome.widget_s <= outcome.duration_s
    assert burnt.widget_s is not None and burnt.widget_s >= 0.05  # it burnt that much CPU, so at least that long


async def test_a_widget_that_floods_its_log_is_stopped_at_its_timeout_while_others_run(runner: ZygoteRunner) -> None:
    flood = asyncio.create_task(
        _run(runner, widget("while True:\n    print('x' * 100_000)"), widget_id="flood", timeout_s=2)
    )
    healthy = [await _run(runner) for _ in range(3)]  # served meanwhile by the same event loop
    flooded = await flood
    assert [outcome.status for outcome in healthy] == ["ok"] * 3
    assert not flood.cancelled() and flooded.status == "timeout", flooded
    assert flooded.logs_truncated
    assert len(flooded.logs.encode()) < 70 * 1024  # the 64 KiB cap and the truncation note
