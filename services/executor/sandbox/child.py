"""What a forked widget process does, in order, before and around widget code.

The zygote forks each child ahead of its job (a *spare*), so the fork is off the
job's critical path. The child inherits the zygote's common seccomp filter (see
seccomp.py). Before its job arrives, the spare does what does not depend on it:

1. New session; every inherited fd closed but its assignment channel.
2. no_new_privs, undumpable.
3. Landlock: read-only runtime, no writes, TCP connect only to allowed ports.

Then it blocks on its channel for exactly one assignment (uid, limits and the job's
three pipes); it is never reused. The channel stays open for the job: it is how the
widget asks the executor for its network connections. With its job it:

4. sends stdout/stderr to the log pipe;
5. sets rlimits: address space, CPU seconds, open files, file size, no core files
   (threads are counted by the executor instead, through the zygote's thread counter
   that every child inherits: see executor/thread_cap.py);
6. as root, switches to the slot's uid/gid with no supplementary groups;
7. loads its own seccomp filter: no uid changes, no new processes, signals to itself only
   (the common filter it inherited already refuses it every network socket);
8. installs the brokered sockets (egress.py), then runs the widget: ``get_sidebar_data(context)``.
The result envelope goes to the result pipe; the process then exits at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import socket
import sys
import time
import traceback
from typing import Any, NoReturn

from executor.sandbox import egress, landlock, seccomp
from executor.sandbox.runtime import widget_builtins

WIDGET_FILENAME = "<widget>"
_PR_SET_NO_NEW_PRIVS, _PR_SET_DUMPABLE = 38, 4
_MAX_ASSIGNMENT = 64 * 1024
_libc = ctypes.CDLL(None, use_errno=True)


def _apply_limits(limits: dict[str, int]) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"], limits["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 1))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"], limits["open_files"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"], limits["file_bytes"]))


def _drop_privileges(uid: int | None, gid: int | None) -> None:
    if uid is None or gid is None or os.geteuid() != 0:
        return
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def _failure(kind: str, exc: BaseException) -> dict[str, Any]:
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == WIDGET_FILENAME:
            line = frame.lineno
    where = f" (line {line})" if line else ""
    text = str(exc)
    message = f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"
    return {"ok": False, "error": {"type": kind, "message": message}}


def _run_widget(request: dict[str, Any]) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "widget", "__builtins__": widget_builtins(request.get("secrets") or {})}
    try:
        exec(compile(request["code"], WIDGET_FILENAME, "exec"), namespace)  # noqa: S102 - the point of the sandbox
        function = namespace.get("get_sidebar_data")
        if not callable(function):
            return {"ok": False, "error": {"type": "invalid_widget", "message": "get_sidebar_data is not defined"}}
        return {"ok": True, "value": function(request["context"])}
    except MemoryError as exc:
        return _failure("memory", exc)
    except SyntaxError as exc:
        return {"ok": False, "error": {"type": "invalid_widget", "message": f"line {exc.lineno}: {exc.msg}"}}
    except BaseException as exc:  # noqa: BLE001 - SystemExit and friends are widget failures too
        # A refused connection is reported by the executor, which made the refusal.
        return _failure("exception", exc)


def _encode(envelope: dict[str, Any]) -> bytes:
    try:
        return json.dumps(envelope, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        message = f"return value is not JSON: {exc}"
    except RecursionError:
        message = "return value is not JSON: it nests too deeply or refers to itself"
    return json.dumps({"ok": False, "error": {"type": "invalid_return", "message": message}}).encode()


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


def _prepare(config: dict[str, Any], channel: socket.socket) -> bytes | None:
    """The job-independent layers, applied while the spare waits; returns this child's
    seccomp program, built now and loaded once the job has switched the uid."""
    os.setsid()
    ruleset = config.get("landlock_ruleset")
    _close_fds_except({0, 1, 2, channel.fileno(), *([ruleset] if ruleset is not None else [])})
    _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    if config["layers"].get("landlock") and ruleset is not None:
        landlock.enforce(ruleset)
    if ruleset is not None:
        os.close(ruleset)
    compiled = config.get("seccomp_filter")
    if config["layers"].get("seccomp") and compiled is not None:
        return seccomp.child_program(compiled, os.getpid())
    return None


def _await_assignment(channel: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """One job from the executor, or None when the zygote retired this spare or died."""
    data, fds, _, _ = socket.recv_fds(channel, _MAX_ASSIGNMENT, 3)
    if not data or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return None
    assignment: dict[str, Any] = json.loads(data)
    return assignment, fds


def serve_one(config: dict[str, Any], channel: socket.socket) -> NoReturn:
    """A spare's whole life: prepare, wait for one job, run it, exit with ``os._exit``."""
    code = 70
    try:
        program: bytes | None = None
        try:
            program = _prepare(config, channel)
            unprepared: BaseException | None = None
        except Exception as exc:  # noqa: BLE001 - reported to the job's log, where someone reads it
            unprepared = exc
        assigned = _await_assignment(channel)
        if assigned is None:
            os._exit(0)  # retired unassigned: the zygote or executor closed the channel
        assignment, (request_fd, log_fd, result_fd) = assigned
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        if unprepared is not None:
            raise unprepared
        _apply_limits(assignment["limits"])
        _drop_privileges(assignment.get("uid"), assignment.get("gid"))
        _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # a uid change resets it to fs.suid_dumpable
        request = _read_request(request_fd)
        if program is not None:
            seccomp.install_child(program)
        egress.install(channel)
        started = time.perf_counter()
        envelope = _run_widget(request)
        envelope["elapsed_s"] = time.perf_counter() - started
        sys.stdout.flush()
        payload = _encode(envelope)
        view = memoryview(payload)
        while view:
            view = view[os.write(result_fd, view) :]
        code = 0
        # Close the pipes before exiting: the executor has everything without waiting for teardown.
        sys.stderr.flush()
        for fd in (result_fd, 1, 2):
            os.close(fd)
    except BaseException as exc:  # noqa: BLE001 - the parent reports a child without a result as crashed
        # Plain os.write: no allocation-heavy formatting, no source lookups under Landlock.
        with contextlib.suppress(BaseException):
            os.write(2, f"sandbox setup failed: {type(exc).__name__}: {exc}\n".encode())
    finally:
        os._exit(code)
