"""The runner adapter that runs each job in a process forked from a warm zygote (see sandbox/zygote.py).

The executor keeps the credentials; the zygote is a separate, fresh interpreter
with an empty environment, so nothing forked from it can inherit them. The
zygote forks spares ahead of time and hands the executor each spare's channel.
Per job the executor creates three pipes (request, logs, result), sends their
child ends with the uid and limits straight to a spare, writes the request,
reads the capped outputs and kills the child's process group at the wall-time limit.
For the length of the job it serves the spare's channel as the widget's egress
supervisor (egress/supervisor.py): the only way the widget gets a network connection.

A job that names its business and widget may leave its child as a *warm worker*
(workers.py): after a clean job (result delivered, no limit hit, no refusal, no
thread left but the main one) the child keeps its uid slot and takes the next job
of the same business, widget and code, with fresh pipes, until it has run
``warm_max_jobs`` jobs, idled ``warm_idle_s`` seconds, or would need more CPU than
its hard limit. Any other ending kills it, as a one-shot child always is. An idle
worker's process group is stopped (SIGSTOP) until its next job, so no widget code
(a timer's handler, a replaced worker loop) runs outside a job; one that used CPU or
asked for a connection all the same is retired instead of reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from executor.capture import (
    STOPPED,
    Capture,
    build_outcome,
    collect,
    open_pipe,
    read_pipe_capped,
    with_denials,
    with_widget_time,
)
from executor.egress.policy import EgressPolicy
from executor.egress.supervisor import JobEgress, refuse_pending
from executor.runner import RunOutcome, RunRequest
from executor.thread_cap import ThreadCap, threads_of
from executor.workers import Worker, WorkerKey, WorkerPool, cpu_seconds_of, worker_key
from shared.contracts.jobs import MAX_TIMEOUT_S

log = structlog.get_logger(__name__)

_PIPE_GRACE_S = 1.0
_ZYGOTE_ANSWER_S = 10.0
_MAX_MESSAGE = 64 * 1024
# Less than a fresh pipe holds (64 KiB): a request this small is written without blocking.
_PIPE_SAFE_BYTES = 60 * 1024
_MAX_SPARES = 4
_DNS_THREADS = 4
# A warm worker's RLIMIT_CPU hard limit: this many times the CPU seconds of the longest
# job (not its first job's, whose timeout may be clipped to what its deadline left).
# Its jobs' soft limits move up under it; it is retired before a job would need more.
_CPU_BUDGET_JOBS = 4
# CPU a stopped worker may seem to gain: what it ran before SIGSTOP reached it, and tick rounding.
_IDLE_CPU_TOLERANCE_S = 0.05
_RUNTIME_PATHS = ("/usr", "/lib", "/lib64", "/bin", "/etc/ssl", "/etc/ca-certificates", "/usr/share/zoneinfo")
_SYSTEM_FILES = (
    "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/host.conf",
    "/etc/services", "/etc/protocols", "/etc/localtime", "/dev/null", "/dev/urandom", "/dev/random",
)  # fmt: skip


class SandboxFailure(RuntimeError):
    """The zygote died or stopped answering."""


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


@dataclass
class _Zygote:
    process: asyncio.subprocess.Process
    control: socket.socket
    spares: dict[int, socket.socket] = field(default_factory=dict)  # pid -> channel, oldest first
    spare_ready: asyncio.Event = field(default_factory=asyncio.Event)
    exits: dict[int, asyncio.Future[int]] = field(default_factory=dict)
    layers: asyncio.Future[dict[str, Any]] | None = None
    threads: ThreadCap | None = None
    alive: bool = True

    def release(self) -> None:
        """Close what the executor holds of this zygote: the spares' channels, the thread counter's listener."""
        for channel in self.spares.values():
            channel.close()  # the spare reads EOF and exits
        self.spares.clear()
        if self.threads is not None:
            self.threads.close()
            self.threads = None


class ZygoteRunner:
    def __init__(self, config: SandboxConfig, on_retire: Callable[[str], None] | None = None) -> None:
        self._config = config
        self._drop_privileges = os.geteuid() == 0
        self._pool = WorkerPool(config.first_uid, config.slots, config.warm_idle_s, self._retire)
        self._on_retire = on_retire
        self._policy = EgressPolicy.parse(config.connect_ports, config.egress_allow)
        # Widgets' name lookups get threads of their own: a slow DNS never holds the loop's default pool.
        self._resolver: ThreadPoolExecutor | None = None
        self._zygote: _Zygote | None = None
        self._starting = asyncio.Lock()

    async def start(self) -> dict[str, Any]:
        """Start the zygote; returns the isolation layers it found on this kernel."""
        zygote = await self._ensure_zygote()
        assert zygote.layers is not None
        return await asyncio.wait_for(asyncio.shield(zygote.layers), _ZYGOTE_ANSWER_S)

    async def close(self) -> None:
        if self._resolver is not None:
            self._resolver.shutdown(wait=False, cancel_futures=True)
            self._resolver = None
        self._pool.retire_all("shutdown")
        zygote, self._zygote = self._zygote, None
        if zygote is None:
            return
        if zygote.alive:
            asyncio.get_running_loop().remove_reader(zygote.control.fileno())
            zygote.alive = False
            _fail(zygote.exits, SandboxFailure("the sandbox is shutting down"))
            zygote.spare_ready.set()  # jobs waiting for a spare see it is gone
        zygote.release()
        zygote.control.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(zygote.process.wait(), 5)
        if zygote.process.returncode is None:
            zygote.process.kill()
            await zygote.process.wait()

    async def run(self, request: RunRequest) -> RunOutcome:
        key = worker_key(request.business_id, request.widget_id, request.code) if self._config.warm_workers else None
        taken = await self._pool.acquire(key)
        kept: Worker | None = None
        try:
            outcome, kept = await self._run_as(taken, key, request)
            return outcome
        finally:
            if kept is not None:
                self._park(kept)
            elif isinstance(taken, Worker):
                # Retired already unless the job failed early: a slot's uid never has two processes.
                self._pool.discard(taken, "unclean")
            else:
                self._pool.release(taken)

    def _park(self, worker: Worker) -> None:
        """Stop the worker's process group until its next job; the CPU it has used then is
        what it may not exceed when it is continued."""
        _signal_group(worker.pid, signal.SIGSTOP)
        used = cpu_seconds_of(worker.pid)
        if used is None:
            worker.exited = True
            self._pool.discard(worker, "exited")
            return
        worker.cpu_used_s = used
        self._pool.park(worker)

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
            asyncio.create_task(read_pipe_capped(open_pipe(log_r), self._config.log_bytes)),
            asyncio.create_task(read_pipe_capped(open_pipe(result_r), self._config.result_bytes + 1)),
        )
        try:
            try:
                if not written_early:
                    await asyncio.to_thread(_write_all_and_close, request_w, request_data)
                exit_code, timed_out = await self._await_end(zygote, pid, pipes, request.timeout_s)
            except SandboxFailure as exc:
                _kill_group(pid)
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
            if not delivered and not _reaped(zygote, pid):
                _kill_group(pid)  # whatever the widget left in its session dies with it
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
            outcome = with_denials(with_widget_time(outcome, result), egress.denials)
            outcome = replace(outcome, worker_start="warm" if warm else "fresh")
            if delivered and worker.key is not None:
                retirement = self._retirement(zygote, worker, outcome, egress.denials) or ""
            return outcome, worker if not retirement else None
        finally:
            egress.stop()
            worker.exited = worker.exited or _reaped(zygote, pid)
            zygote.exits.pop(pid, None)
            if retirement:
                self._retire(worker, retirement)

    async def _assign(
        self, zygote: _Zygote, taken: Worker | int, key: WorkerKey | None, cpu_seconds: int, fds: list[int]
    ) -> tuple[Worker, bool]:
        """Send the job to ``taken`` if it is a worker that can take it (True), else to a spare."""
        if isinstance(taken, Worker):
            refusal = self._refusal(zygote, taken, cpu_seconds)
            if refusal is None and self._reassign(zygote, taken, cpu_seconds, fds):
                return taken, True
            self._retire(taken, refusal or "unreachable")
            uid = taken.uid
        else:
            uid = taken
        # One-shot: the hard limit a second past the soft one, as ever. Warm: a lifetime budget.
        longest = self._config.job_cpu_seconds or int(MAX_TIMEOUT_S) + 1
        hard = cpu_seconds + 1 if key is None else longest * _CPU_BUDGET_JOBS
        assignment = self._assignment(uid, cpu_seconds, hard, warm=key is not None)
        pid, channel = await self._dispatch(zygote, assignment, fds)
        return Worker(pid=pid, channel=channel, uid=uid, key=key, cpu_hard_s=hard, zygote=zygote), False

    @staticmethod
    def _refusal(zygote: _Zygote, worker: Worker, cpu_seconds: int) -> str | None:
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

    @staticmethod
    def _reassign(zygote: _Zygote, worker: Worker, cpu_seconds: int, fds: list[int]) -> bool:
        """Continue an idle worker and send it the next job over its channel; False if it is gone."""
        zygote.exits[worker.pid] = asyncio.get_running_loop().create_future()
        data = json.dumps({"limits": {"cpu_seconds": cpu_seconds}, "warm": True}).encode()
        try:
            # Queued while it is stopped: continued, it finds its job (and request) waiting.
            socket.send_fds(worker.channel, [data], fds)
        except OSError:
            zygote.exits.pop(worker.pid, None)
            return False
        _signal_group(worker.pid, signal.SIGCONT)
        return True

    def _retirement(self, zygote: _Zygote, worker: Worker, outcome: RunOutcome, denials: list[str]) -> str | None:
        """Why a worker that delivered its result may not take another job; None if it may."""
        if outcome.error_type in STOPPED:
            return "unclean"
        if denials:
            return "egress_denied"
        if worker.jobs >= self._config.warm_max_jobs:
            return "max_jobs"
        if not zygote.alive or zygote is not self._zygote:
            return "zygote_gone"
        if cpu_seconds_of(worker.pid) is None:  # gone, or a zombie the zygote has yet to reap
            worker.exited = True
            return "exited"  # e.g. widget code kept a copy of a job's pipe: the worker exits to close it
        if threads_of(worker.pid) != 1:
            return "thread_left"
        return None

    def _retire(self, worker: Worker, reason: str) -> None:
        if worker.retired:
            return
        worker.retired = True
        if not worker.exited:  # else its pid may be another process's by now
            _kill_group(worker.pid)
        worker.channel.close()
        if worker.key is not None:
            log.debug("sandbox.worker_retired", pid=worker.pid, reason=reason, jobs=worker.jobs)
            if self._on_retire is not None:
                self._on_retire(reason)

    async def _dispatch(self, zygote: _Zygote, assignment: dict[str, Any], fds: list[int]) -> tuple[int, socket.socket]:
        """Send one job to a waiting spare; returns its pid and channel, which the caller
        now owns. A spare that died meanwhile is skipped."""
        data = json.dumps(assignment).encode()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _ZYGOTE_ANSWER_S
        while True:
            while not zygote.spares:
                if not zygote.alive:
                    raise SandboxFailure("the sandbox zygote exited; it restarts for the next job")
                zygote.spare_ready.clear()
                try:
                    await asyncio.wait_for(zygote.spare_ready.wait(), max(0.0, deadline - loop.time()))
                except TimeoutError as exc:
                    raise SandboxFailure("the sandbox zygote did not provide a widget process") from exc
            pid = next(iter(zygote.spares))
            channel = zygote.spares.pop(pid)
            zygote.exits[pid] = loop.create_future()
            try:
                # "took" first: the zygote forks a replacement, and having read it before
                # the child's exit, does not take the child for a spare that died unassigned.
                self._send(zygote, {"op": "took", "pid": pid})
                socket.send_fds(channel, [data], fds)
            except SandboxFailure:
                zygote.exits.pop(pid, None)
                channel.close()
                raise
            except OSError:
                zygote.exits.pop(pid, None)
                channel.close()
                continue  # it died unassigned; its exit is reported and ignored
            except BaseException:
                channel.close()
                raise
            return pid, channel

    @staticmethod
    async def _await_end(
        zygote: _Zygote, pid: int, pipes: tuple[asyncio.Task[Capture], asyncio.Task[Capture]], limit_s: float
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

    async def _ensure_zygote(self) -> _Zygote:
        async with self._starting:
            if self._zygote is None or not self._zygote.alive:
                if self._zygote is not None:
                    await self.close()
                self._zygote = await self._spawn()
            return self._zygote

    async def _spawn(self) -> _Zygote:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = await asyncio.create_subprocess_exec(
                self._config.python,
                "-I",
                "-X",
                "utf8",
                "-m",
                "executor.sandbox.zygote",
                str(child.fileno()),
                stdin=asyncio.subprocess.PIPE,
                env={},
                cwd="/",
                pass_fds=(child.fileno(),),
            )
        finally:
            child.close()
        assert process.stdin is not None
        process.stdin.write(json.dumps(self._config.zygote_config()).encode() + b"\n")
        await process.stdin.drain()
        process.stdin.close()
        parent.setblocking(False)
        zygote = _Zygote(process=process, control=parent)
        zygote.layers = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_reader(parent.fileno(), self._on_readable, zygote)
        self._send(zygote, {"op": "layers"})
        return zygote

    @staticmethod
    def _send(zygote: _Zygote, message: dict[str, Any]) -> None:
        if not zygote.alive:
            raise SandboxFailure("the sandbox zygote is not running")
        data = json.dumps(message).encode()
        for _ in range(1000):
            try:
                zygote.control.send(data)
                return
            except BlockingIOError:
                time.sleep(0.001)  # the zygote answers in microseconds; this never spins long
        raise SandboxFailure("the sandbox zygote does not read its control socket")

    def _on_readable(self, zygote: _Zygote) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(zygote.control, _MAX_MESSAGE, 1)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self._zygote_died(zygote)
                return
            message = json.loads(data)
            if "spare" in message and len(fds) == 1:
                os.set_inheritable(fds[0], False)
                zygote.spares[message["spare"]] = socket.socket(fileno=fds[0])
                zygote.spare_ready.set()
                continue
            if "threads" in message and len(fds) == 1 and zygote.threads is None:
                os.set_inheritable(fds[0], False)
                zygote.threads = ThreadCap(self._config.threads)
                zygote.threads.watch(fds[0])
                continue
            for fd in fds:
                os.close(fd)
            if "layers" in message and zygote.layers is not None and not zygote.layers.done():
                zygote.layers.set_result(message["layers"])
            elif "status" in message:
                spare = zygote.spares.pop(message["pid"], None)
                if spare is not None:
                    spare.close()  # died before it had a job
                self._pool.forget(message["pid"])  # an idle worker that died by itself
                exit_future = zygote.exits.get(message["pid"])
                if exit_future is not None and not exit_future.done():
                    exit_future.set_result(message["status"])
            elif "error" in message:
                log.error("sandbox.zygote_refused", error=message["error"])

    def _zygote_died(self, zygote: _Zygote) -> None:
        zygote.alive = False
        asyncio.get_running_loop().remove_reader(zygote.control.fileno())
        zygote.release()
        self._pool.retire_all("zygote_gone")  # its idle workers would take no job from the next zygote
        zygote.spare_ready.set()  # waiters see it is gone
        _fail(zygote.exits, SandboxFailure("the sandbox zygote exited; it restarts for the next job"))
        log.error("sandbox.zygote_died")


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


def _fail(exits: dict[int, asyncio.Future[int]], failure: SandboxFailure) -> None:
    """Wake every job waiting for an exit status; a job that already has its result never looks."""
    for future in exits.values():
        if not future.done():
            future.set_exception(failure)
            future.add_done_callback(lambda done: done.exception())  # retrieved: no "never retrieved" noise


def _reaped(zygote: _Zygote, pid: int) -> bool:
    """The zygote has reported ``pid``'s exit status: the pid is free for another process."""
    future = zygote.exits.get(pid)
    return future is not None and future.done() and future.exception() is None


def _kill_group(pid: int) -> None:
    _signal_group(pid, signal.SIGKILL)  # a stopped process dies too


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
