"""The runner adapter that runs each job in a process forked from a warm zygote (zygote.py).

Per job the executor creates three pipes (request, logs, result), writes the request
(before the child can wait for it, when it fits the pipe), sends the child ends with
the uid and limits straight to a spare, reads the capped outputs and kills the
child's process group at the wall-time limit.
For the length of the job it serves the spare's channel as the widget's egress
supervisor (egress/supervisor.py): the only way the widget gets a network connection.
A job that names its business and widget may leave its child as a warm worker
(worker_lifecycle.py) for the next job of the same widget.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from executor import worker_lifecycle as lifecycle
from executor.capture import (
    Capture,
    build_outcome,
    collect,
    read_pipe_capped,
    with_denials,
)
from executor.egress.policy import EgressPolicy
from executor.egress.supervisor import JobEgress
from executor.runner import RunOutcome, RunRequest
from executor.workers import Retire, Worker, WorkerKey, WorkerPool, worker_key
from executor.zygote import SandboxFailure, Zygote
from shared.contracts.jobs import MAX_TIMEOUT_S

_PIPE_GRACE_S = 1.0
# Less than a fresh pipe holds (64 KiB): a request this small is written without blocking.
_PIPE_SAFE_BYTES = 60 * 1024
_MAX_SPARES = 4
_DNS_THREADS = 4
_RUNTIME_PATHS = ("/usr", "/lib", "/lib64", "/bin", "/etc/ssl", "/etc/ca-certificates", "/usr/share/zoneinfo")
_SYSTEM_FILES = (
    "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/host.conf",
    "/etc/services", "/etc/protocols", "/etc/localtime", "/dev/null", "/dev/urandom", "/dev/random",
)  # fmt: skip


@dataclass(frozen=True)
class SandboxConfig:
    memory_bytes: int
    log_bytes: int
    result_bytes: int
    first_uid: int
    slots: int
    gid: int
    egress_allow: tuple[str, ...] = ()
    connect_ports: tuple[int, ...] = (80, 443)
    extra_ca_file: str | None = None
    open_files: int = 64
    file_bytes: int = 1024 * 1024
    threads: int = 32
    warm_workers: bool = True
    warm_max_jobs: int = 500
    warm_idle_s: float = 60.0
    # CPU seconds per job; None: the job's timeout plus a second, so the wall-time limit
    # comes first for a one-thread widget. Tests set it below the timeout to reach it first.
    job_cpu_seconds: int | None = None
    python: str = sys.executable

    def zygote_config(self) -> dict[str, Any]:
        ports = {*self.connect_ports, *(int(entry.rpartition(":")[2]) for entry in self.egress_allow)}
        return {
            "read_only_paths": sorted({*_RUNTIME_PATHS, *_SYSTEM_FILES, *_python_paths()}),
            "connect_ports": sorted(ports),
            "extra_ca_file": self.extra_ca_file,
            "spares": min(self.slots, _MAX_SPARES),
        }


def _python_paths() -> set[str]:
    import executor

    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(executor.__file__))}
    return paths | {path for path in sys.path if path and os.path.isdir(path)}


class ZygoteRunner:
    def __init__(self, config: SandboxConfig, on_retire: Callable[[str], None] | None = None) -> None:
        self._config = config
        self._drop_privileges = os.geteuid() == 0
        self._retire: Retire = functools.partial(lifecycle.retire, on_retire=on_retire)
        self._pool = WorkerPool(config.first_uid, config.slots, config.warm_idle_s, self._retire)
        self._policy = EgressPolicy.parse(config.connect_ports, config.egress_allow)
        # Widgets' name lookups get threads of their own: a slow DNS never holds the loop's default pool.
        self._resolver: ThreadPoolExecutor | None = None
        self._zygote: Zygote | None = None
        self._starting = asyncio.Lock()

    async def start(self) -> dict[str, Any]:
        """Start the zygote; returns the isolation layers it found on this kernel."""
        zygote = await self._ensure_zygote()
        return await zygote.isolation_layers()

    async def close(self) -> None:
        if self._resolver is not None:
            self._resolver.shutdown(wait=False, cancel_futures=True)
            self._resolver = None
        self._pool.retire_all("shutdown")
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            await zygote.stop()

    async def run(self, request: RunRequest) -> RunOutcome:
        key = worker_key(request.business_id, request.widget_id, request.code) if self._config.warm_workers else None
        taken = await self._pool.acquire(key)
        kept: Worker | None = None
        try:
            outcome, kept = await self._run_as(taken, key, request)
            return outcome
        finally:
            if kept is not None:
                lifecycle.park(kept, self._pool)
            elif isinstance(taken, Worker):
                # Retired already unless the job failed early: a slot's uid never has two processes.
                self._pool.discard(taken, "unclean")
            else:
                self._pool.release(taken)

    async def _run_as(
        self, taken: Worker | int, key: WorkerKey | None, request: RunRequest
    ) -> tuple[RunOutcome, Worker | None]:
        """The outcome, and the worker when it may take the next job of its key."""
        zygote = await self._ensure_zygote()
        cpu_seconds = self._config.job_cpu_seconds or max(1, int(request.timeout_s) + 1)
        request_r, request_w = os.pipe()
        log_r, log_w = os.pipe()
        result_r, result_w = os.pipe()
        started = time.perf_counter()
        # A request that fits the pipe is in it before the child is woken: it reads it at once.
        request_data = _request_payload(request)
        written_early = len(request_data) < _PIPE_SAFE_BYTES
        if written_early:
            _write_all_and_close(request_w, request_data)
        try:
            worker, warm = await self._assign(zygote, taken, key, cpu_seconds, [request_r, log_w, result_w])
        except BaseException as exc:
            for fd in (log_r, result_r) if written_early else (request_w, log_r, result_r):
                os.close(fd)
            if not isinstance(exc, SandboxFailure):
                raise
            failed = RunOutcome(
                "error", time.perf_counter() - started, error_type="sandbox_failure", error_message=str(exc)
            )
            return failed, None
        finally:
            for fd in (request_r, log_w, result_w):
                os.close(fd)
        # The child has its job: from here it is parked for the next job, or killed and forgotten.
        pid, retirement = worker.pid, "unclean"
        worker.jobs += 1
        if self._resolver is None:
            self._resolver = ThreadPoolExecutor(_DNS_THREADS, thread_name_prefix="egress-dns")
        egress = JobEgress(self._policy, worker.channel, request.timeout_s, self._resolver)
        egress.start()
        pipes = (
            read_pipe_capped(log_r, self._config.log_bytes),
            read_pipe_capped(result_r, self._config.result_bytes + 1),
        )
        try:
            try:
                if not written_early:
                    await asyncio.to_thread(_write_all_and_close, request_w, request_data)
                exit_code, timed_out = await self._await_end(zygote, pid, pipes, request.timeout_s)
            except SandboxFailure as exc:
                lifecycle.kill_group(pid)
                await collect(pipes, _PIPE_GRACE_S)
                failed = RunOutcome(
                    "error", time.perf_counter() - started, error_type="sandbox_failure", error_message=str(exc)
                )
                return failed, None
            except BaseException:
                for task in pipes:
                    task.cancel()
                raise
            delivered = not timed_out and bool(pipes[1].result().data)
            if not delivered and not zygote.reaped(pid):
                lifecycle.kill_group(pid)  # whatever the widget left in its session dies with it
            egress.stop()
            duration = time.perf_counter() - started
            logs, result = await collect(pipes, _PIPE_GRACE_S)
            outcome = build_outcome(
                exit_code=exit_code,
                timed_out=timed_out,
                duration=duration,
                logs=logs,
                result=result,
                timeout=request.timeout_s,
                result_limit=self._config.result_bytes,
            )
            outcome = with_denials(outcome, egress.denials)
            outcome = replace(outcome, worker_start="warm" if warm else "fresh")
            if delivered and worker.key is not None:
                gone = not zygote.alive or zygote is not self._zygote
                reason = lifecycle.retirement(
                    worker, outcome, egress.denials, max_jobs=self._config.warm_max_jobs, zygote_gone=gone
                )
                retirement = reason or ""
            return outcome, worker if not retirement else None
        finally:
            egress.stop()
            worker.exited = worker.exited or zygote.reaped(pid)
            zygote.exits.pop(pid, None)
            if retirement:
                self._retire(worker, retirement)

    async def _assign(
        self, zygote: Zygote, taken: Worker | int, key: WorkerKey | None, cpu_seconds: int, fds: list[int]
    ) -> tuple[Worker, bool]:
        """Send the job to ``taken`` if it is a worker that can take it (True), else to a spare."""
        if isinstance(taken, Worker):
            refusal = lifecycle.refusal(zygote, taken, cpu_seconds)
            if refusal is None and lifecycle.reassign(zygote, taken, cpu_seconds, fds):
                return taken, True
            self._retire(taken, refusal or "unreachable")
            uid = taken.uid
        else:
            uid = taken
        longest = self._config.job_cpu_seconds or int(MAX_TIMEOUT_S) + 1
        hard = lifecycle.cpu_hard_limit(cpu_seconds, longest, warm=key is not None)
        assignment = self._assignment(uid, cpu_seconds, hard, warm=key is not None)
        pid, channel = await zygote.dispatch(assignment, fds)
        return Worker(pid=pid, channel=channel, uid=uid, key=key, cpu_hard_s=hard, zygote=zygote), False

    @staticmethod
    async def _await_end(
        zygote: Zygote, pid: int, pipes: tuple[asyncio.Future[Capture], asyncio.Future[Capture]], limit_s: float
    ) -> tuple[int, bool]:
        """(exit code, timed out). A child that delivered its result closes its pipes before
        exiting, so its teardown is not waited for; without a result, its exit status explains why."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        exit_future = zygote.exits[pid]
        try:
            _, pending = await asyncio.wait(pipes, timeout=limit_s)
            if pending:
                raise TimeoutError
            if pipes[1].result().data:
                return 0, False
            status = await asyncio.wait_for(asyncio.shield(exit_future), max(0.0, deadline - loop.time()))
            return os.waitstatus_to_exitcode(status), False
        except TimeoutError:
            return 0, True

    def _assignment(self, uid: int, cpu_seconds: int, cpu_hard_seconds: int, *, warm: bool) -> dict[str, Any]:
        config = self._config
        return {
            "uid": uid if self._drop_privileges else None,
            "gid": config.gid if self._drop_privileges else None,
            "limits": {
                "memory_bytes": config.memory_bytes,
                "cpu_seconds": cpu_seconds,
                "cpu_hard_seconds": cpu_hard_seconds,
                "open_files": config.open_files,
                "file_bytes": config.file_bytes,
            },
            "warm": warm,
        }

    async def _ensure_zygote(self) -> Zygote:
        async with self._starting:
            if self._zygote is None or not self._zygote.alive:
                if self._zygote is not None:
                    await self.close()
                config = self._config
                self._zygote = await Zygote.spawn(config.python, config.zygote_config(), config.threads, self._pool)
            return self._zygote


def _request_payload(request: RunRequest) -> bytes:
    return json.dumps({"code": request.code, "context": request.context, "secrets": request.secrets}).encode()


def _write_all_and_close(fd: int, payload: bytes) -> None:
    """Write the request and close ``fd`` (EOF ends it). The writer owns the fd: a cancelled
    job must not leave a thread writing into a number since reused."""
    view = memoryview(payload)
    try:
        with contextlib.suppress(BrokenPipeError):
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
