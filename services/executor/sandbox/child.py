"""What a forked widget process does, in order, before and around widget code.

The zygote forks each child ahead of its job (a *spare*), so the fork is off the
job's critical path. The child inherits the zygote's common seccomp filter (see
seccomp.py). Before its job arrives, the spare does what does not depend on it:

1. New session; every inherited fd closed but its assignment channel.
2. no_new_privs, undumpable.
3. Landlock: read-only runtime, no writes, TCP connect only to allowed ports.

Then it blocks on its channel for an assignment (uid, limits and the job's three
pipes). The channel stays open for the job: it is how the widget asks the executor
for its network connections. With its first job it:

4. sends stdout/stderr to the log pipe;
5. sets rlimits: address space, CPU seconds, open files, file size, no core files
   (threads are counted by the executor instead, through the zygote's thread counter
   that every child inherits: see executor/thread_cap.py);
6. as root, switches to the slot's uid/gid with no supplementary groups;
7. loads its own seccomp filter: no uid changes, no new processes, signals to itself only
   (the common filter it inherited already refuses it every network socket);
8. installs the brokered sockets (egress.py), then runs the widget: ``get_sidebar_data(context)``.

The result envelope goes to the result pipe, and the job's pipes are closed. A
one-shot child then exits. A *warm worker* (the assignment says ``warm``) waits on
its channel for the next job, which the executor sends only for the same business,
widget and code: every layer above stays in force, and per job it re-points
stdout/stderr at the new log pipe, moves its CPU limit on by the job's seconds (the
hard limit, fixed at the first job, bounds its whole life) and runs the code,
compiled once, in a fresh namespace with fresh helpers. Only process-level state
(imported modules, interpreter caches) carries over; between jobs the executor keeps
the worker stopped (SIGSTOP), so none of it runs (docs/sandbox.md#warm-workers).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import resource
import select
import signal
import socket
import sys
import time
from types import CodeType
from typing import Any, NoReturn

from executor.sandbox import egress, landlock, seccomp
from executor.sandbox.runtime import widget_builtins
from executor.sandbox_child import WIDGET_FILENAME, encode, run_widget

_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS, _PR_SET_DUMPABLE = 1, 38, 4
_MAX_ASSIGNMENT = 64 * 1024
_TIMERS = (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)
_libc = ctypes.CDLL(None, use_errno=True)


def _apply_limits(limits: dict[str, int]) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"], limits["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_hard_seconds"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"], limits["open_files"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"], limits["file_bytes"]))


def _extend_cpu_limit(seconds: int) -> None:
    """RLIMIT_CPU counts the process's whole life: the next job gets ``seconds`` past what
    is spent, under the hard limit set with the first job (the executor retires a worker
    before a job would need more)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (min(math.ceil(usage.ru_utime + usage.ru_stime) + seconds, hard), hard))


def _die_with(parent: int) -> None:
    """SIGKILL this process when the zygote that forked it dies, however it dies: a warm
    worker idles stopped (SIGSTOP), so it would never notice its channel closing. Set after
    the uid switch, which clears it; a zygote already gone by then is checked for."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        raise RuntimeError("the sandbox zygote exited")


def _drop_privileges(uid: int | None, gid: int | None) -> None:
    if uid is None or gid is None or os.geteuid() != 0:
        return
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


class _Widget:
    """The widget code of this process, compiled once; each run gets a fresh namespace."""

    def __init__(self) -> None:
        self._source: str | None = None
        self._code: CodeType | None = None
        self._namespace: dict[str, Any] = {}

    def compiled(self, source: str) -> CodeType:
        if self._code is None or source != self._source:
            self._code, self._source = compile(source, WIDGET_FILENAME, "exec"), source
        return self._code

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        namespace = self._namespace = {
            "__name__": "widget",
            "__builtins__": widget_builtins(request.get("secrets") or {}),
        }
        # A refused connection is reported by the executor, which made the refusal.
        return run_widget(lambda: self.compiled(request["code"]), namespace, request["context"])

    def clear(self) -> None:
        """Drop the run's namespace and helpers (secrets included). Functions and namespace refer
        to each other: breaking the cycle frees the run's objects, and closes their files, now,
        while the job's log still takes what their finalizers print."""
        namespace, self._namespace = self._namespace, {}
        builtins = namespace.get("__builtins__")
        namespace.clear()
        if isinstance(builtins, dict):
            builtins.clear()


def _close_fds_except(keep: set[int]) -> None:
    """The zygote's control socket and other jobs' pipes must not reach widget code."""
    # An empty range makes close_range(2) fail, and CPython's fallback then closes too much.
    low = 0
    for fd in sorted(keep):
        if low < fd:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, max(low + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0]))


def _read_request(fd: int) -> dict[str, Any]:
    with os.fdopen(fd, "rb") as source:
        request: dict[str, Any] = json.loads(source.read())
    return request


def _prepare(config: dict[str, Any], channel: socket.socket) -> tuple[bytes | None, int]:
    """The job-independent layers, applied while the spare waits; returns this child's
    seccomp program, built now and loaded once the job has switched the uid, and an fd
    on /dev/null for stdout/stderr between jobs (opened now: Landlock refuses it later)."""
    os.setsid()
    ruleset = config.get("landlock_ruleset")
    _close_fds_except({0, 1, 2, channel.fileno(), *([ruleset] if ruleset is not None else [])})
    quiet = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    if config["layers"].get("landlock") and ruleset is not None:
        landlock.enforce(ruleset)
    if ruleset is not None:
        os.close(ruleset)
    compiled = config.get("seccomp_filter")
    if config["layers"].get("seccomp") and compiled is not None:
        return seccomp.child_program(compiled, os.getpid()), quiet
    return None, quiet


def _await_assignment(channel: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """One job from the executor, or None when the zygote or executor retired this process."""
    channel.setblocking(True)
    data, fds, _, _ = socket.recv_fds(channel, _MAX_ASSIGNMENT, 3)
    if not data or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return None
    assignment: dict[str, Any] = json.loads(data)
    return assignment, fds


def _deliver(envelope: dict[str, Any], result_fd: int) -> None:
    sys.stdout.flush()
    view = memoryview(encode(envelope))
    while view:
        view = view[os.write(result_fd, view) :]
    sys.stderr.flush()


def _end_job(result_fd: int, quiet: int, *, warm: bool) -> bool:
    """Close the job's pipes (stdout/stderr go to /dev/null): the executor has everything
    without waiting for this process to exit or to take another job. True when it may
    take another: it is warm and widget code holds no copy of a pipe (``os.dup``), which
    only this process's exit would close."""
    sys.stdout.flush()  # what the run's finalizers printed belongs to its log
    sys.stderr.flush()
    pipes = {_identity(result_fd), _identity(1)}
    os.close(result_fd)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    if not warm:
        return False  # exiting anyway
    # Best effort: fds past the current hard limit, or a copy of a pipe that fd 1 no longer
    # is, go unseen. Safe all the same: the copy keeps the pipe open, so the executor never
    # sees the job end and it ends as a timeout, the worker killed.
    for fd in _open_fds(3, resource.getrlimit(resource.RLIMIT_NOFILE)[1]):
        try:
            if _identity(fd) in pipes:
                return False
        except OSError:
            continue  # closed meanwhile
    return True


def _open_fds(first: int, end: int) -> list[int]:
    """The open descriptors in [first, end), found with one poll(2) (a closed one is POLLNVAL),
    not a failing fstat(2) per number."""
    poller = select.poll()
    for fd in range(first, end):
        poller.register(fd, 0)
    closed = {fd for fd, revents in poller.poll(0) if revents & select.POLLNVAL}
    return [fd for fd in range(first, end) if fd not in closed]


def _identity(fd: int) -> tuple[int, int]:
    status = os.fstat(fd)
    return status.st_dev, status.st_ino


def _start_job(log_fd: int) -> None:
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__


def _between_jobs() -> None:
    """No timer of the job is left to fire a handler in the next one (the executor keeps
    the worker stopped meanwhile: only a timer or code it did not cancel runs, and then in a job)."""
    for timer in _TIMERS:
        signal.setitimer(timer, 0)
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)


def serve(config: dict[str, Any], channel: socket.socket) -> NoReturn:
    """A child's whole life: prepare, run its job (and, warm, the next jobs of the same
    widget), exit with ``os._exit``."""
    code = 70
    zygote = os.getppid()
    try:
        program: bytes | None = None
        quiet = -1
        try:
            program, quiet = _prepare(config, channel)
            unprepared: BaseException | None = None
        except Exception as exc:  # noqa: BLE001 - reported to the job's log, where someone reads it
            unprepared = exc
        assigned = _await_assignment(channel)
        if assigned is None:
            os._exit(0)  # retired unassigned: the zygote or executor closed the channel
        widget, first = _Widget(), True
        while assigned is not None:
            assignment, (request_fd, log_fd, result_fd) = assigned
            _start_job(log_fd)
            if unprepared is not None:
                raise unprepared
            if first:
                _apply_limits(assignment["limits"])
                _drop_privileges(assignment.get("uid"), assignment.get("gid"))
                _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # a uid change resets it to fs.suid_dumpable
                _die_with(zygote)
            else:
                _extend_cpu_limit(assignment["limits"]["cpu_seconds"])
            request = _read_request(request_fd)
            if first:
                if program is not None:
                    seccomp.install_child(program)
                egress.install(channel)
                first = False
            started = time.perf_counter()
            envelope = widget.run(request)
            envelope["elapsed_s"] = time.perf_counter() - started
            _deliver(envelope, result_fd)
            warm = bool(assignment.get("warm"))
            del envelope, request, assignment, assigned  # the job's context and secrets, gone while idle
            if warm:
                widget.clear()  # before the pipes close: a file the run left open may be a copy of one
            if not _end_job(result_fd, quiet, warm=warm):
                break  # exiting closes every copy of the pipes
            _between_jobs()
            assigned = _await_assignment(channel)
        code = 0
    except BaseException as exc:  # noqa: BLE001 - the parent reports a child without a result as crashed
        # Plain os.write: no allocation-heavy formatting, no source lookups under Landlock.
        with contextlib.suppress(BaseException):
            os.write(2, f"sandbox setup failed: {type(exc).__name__}: {exc}\n".encode())
    finally:
        os._exit(code)
