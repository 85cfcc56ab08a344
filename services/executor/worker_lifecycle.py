"""A worker's process from one job to the next: parked, checked, continued, retired.

A job that names its business and widget may leave its child as a *warm worker*
(workers.py keeps them): after a clean job (result delivered, no limit hit, no
refusal, no thread left but the main one) the child keeps its uid slot and takes
the next job of the same business, widget and code, with fresh pipes, until it has
run ``warm_max_jobs`` jobs, idled ``warm_idle_s`` seconds, or would need more CPU
than its hard limit. Any other ending kills it, as a one-shot child always is. An
idle worker's process group is stopped (SIGSTOP) until its next job, so no widget
code (a timer's handler, a replaced worker loop) runs outside a job; one that used
CPU or asked for a connection all the same is retired instead of reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections.abc import Callable

import structlog

from executor.capture import STOPPED
from executor.egress.supervisor import refuse_pending
from executor.runner import RunOutcome
from executor.thread_cap import threads_of
from executor.workers import Worker, WorkerPool
from executor.zygote import Zygote

log = structlog.get_logger(__name__)

# A warm worker's RLIMIT_CPU hard limit: this many times the CPU seconds of the longest
# job (not its first job's, whose timeout may be clipped to what its deadline left).
# Its jobs' soft limits move up under it; it is retired before a job would need more.
_CPU_BUDGET_JOBS = 4
# CPU a stopped worker may seem to gain: what it ran before SIGSTOP reached it, and tick rounding.
_IDLE_CPU_TOLERANCE_S = 0.05
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PF_EXITING = 0x4


def cpu_hard_limit(cpu_seconds: int, longest_job_s: int, *, warm: bool) -> int:
    """RLIMIT_CPU's hard limit for a new worker. One-shot: a second past the soft one,
    as ever. Warm: a lifetime budget."""
    return longest_job_s * _CPU_BUDGET_JOBS if warm else cpu_seconds + 1


def park(worker: Worker, pool: WorkerPool) -> None:
    """Stop the worker's process group until its next job; the CPU it has used then is
    what it may not exceed when it is continued."""
    signal_group(worker.pid, signal.SIGSTOP)
    used = cpu_seconds_of(worker.pid)
    if used is None:
        worker.exited = True
        pool.discard(worker, "exited")
        return
    worker.cpu_used_s = used
    pool.park(worker)


def refusal(zygote: Zygote, worker: Worker, cpu_seconds: int) -> str | None:
    """Why an idle (stopped) worker may not take the job; None if it may. Stopped, it
    can have run nothing: if it did all the same, it is not trusted with another job."""
    if worker.zygote is not zygote:
        return "zygote_gone"
    used = cpu_seconds_of(worker.pid)
    if used is None:
        worker.exited = True
        return "exited"
    dropped = refuse_pending(worker.channel)
    if dropped:
        log.warning("sandbox.egress_between_jobs", pid=worker.pid, requests=dropped)
        return "egress_between_jobs"
    if used > worker.cpu_used_s + _IDLE_CPU_TOLERANCE_S:
        log.warning("sandbox.cpu_between_jobs", pid=worker.pid, seconds=round(used - worker.cpu_used_s, 3))
        return "cpu_between_jobs"
    if used + cpu_seconds + 1 > worker.cpu_hard_s:
        return "cpu_budget"
    return None


def reassign(zygote: Zygote, worker: Worker, cpu_seconds: int, fds: list[int]) -> bool:
    """Continue an idle worker and send it the next job over its channel; False if it is gone."""
    zygote.exits[worker.pid] = asyncio.get_running_loop().create_future()
    data = json.dumps({"limits": {"cpu_seconds": cpu_seconds}, "warm": True}).encode()
    try:
        # Queued while it is stopped: continued, it finds its job (and request) waiting.
        socket.send_fds(worker.channel, [data], fds)
    except OSError:
        zygote.exits.pop(worker.pid, None)
        return False
    signal_group(worker.pid, signal.SIGCONT)
    return True


def retirement(
    worker: Worker, outcome: RunOutcome, denials: list[str], *, max_jobs: int, zygote_gone: bool
) -> str | None:
    """Why a worker that delivered its result may not take another job; None if it may."""
    if outcome.error_type in STOPPED:
        return "unclean"
    if denials:
        return "egress_denied"
    if worker.jobs >= max_jobs:
        return "max_jobs"
    if zygote_gone:
        return "zygote_gone"
    if cpu_seconds_of(worker.pid) is None:  # gone, or a zombie the zygote has yet to reap
        worker.exited = True
        return "exited"  # e.g. widget code kept a copy of a job's pipe: the worker exits to close it
    if threads_of(worker.pid) != 1:
        return "thread_left"
    return None


def retire(worker: Worker, reason: str, on_retire: Callable[[str], None] | None = None) -> None:
    """Kill the worker's process group and close its channel, once however often it is called."""
    if worker.retired:
        return
    worker.retired = True
    if not worker.exited:  # else its pid may be another process's by now
        kill_group(worker.pid)
    worker.channel.close()
    if worker.key is not None:
        log.debug("sandbox.worker_retired", pid=worker.pid, reason=reason, jobs=worker.jobs)
        if on_retire is not None:
            on_retire(reason)


def cpu_seconds_of(pid: int) -> float | None:
    """CPU time the process has used, all its threads (live and ended) included; None once
    it is exiting or has exited, whether reaped (no /proc entry) or not yet (a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return None
    # After the name: state is field 3 of proc(5), flags 9, utime 14 and stime 15.
    # PF_EXITING is set before an exiting process closes its files, so before its pipes read EOF.
    if fields[0] in (b"Z", b"X") or int(fields[6]) & _PF_EXITING:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def kill_group(pid: int) -> None:
    signal_group(pid, signal.SIGKILL)  # a stopped process dies too


def signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
