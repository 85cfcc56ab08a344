"""The two seccomp filters on their own, in a forked process that keeps the test's uid:
the kernel would let it signal the test process (same uid, or root), so only the
filters can refuse. As root, the uid and group changes are likewise the filters' doing.
The test process answers the child's thread notifications, as the executor does."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import select
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from executor.sandbox import seccomp
from executor.thread_cap import ThreadCap, threads_of

_libc = ctypes.CDLL(None, use_errno=True)
_NR = {
    "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "tgkill": 234, "pidfd_open": 434, "pidfd_send_signal": 424,
    "ioprio_set": 251,
}  # fmt: skip
_IOPRIO_WHO_PROCESS = 1


def _syscall(number: int, *args: int | ctypes.Array[ctypes.c_char]) -> str:
    if _libc.syscall(number, *args) == 0:
        return "allowed"
    code = ctypes.get_errno()
    return "denied" if code == errno.EPERM else errno.errorcode.get(code, str(code))


def _queue(number: int, *target: int) -> str:
    info = ctypes.create_string_buffer(128)
    info[8:12] = (-1).to_bytes(4, "little", signed=True)  # si_code = SI_QUEUE
    return _syscall(number, *target, 0, info)  # signal 0: permission check only


def _attempt(call: Callable[[], object]) -> str:
    try:
        call()
    except PermissionError:
        return "denied"
    return "allowed"


def _until_the_kernel_counts_one_thread() -> None:
    """The cap counts tasks in /proc: a joined thread may still be there for a moment."""
    for _ in range(5000):
        if threads_of(os.getpid()) == 1:
            return
        time.sleep(0.001)
    raise AssertionError("a joined thread never left /proc/self/task")


def _second_thread_while_the_first_runs() -> str:
    release = threading.Event()
    first = threading.Thread(target=release.wait)
    first.start()
    try:
        threading.Thread(target=lambda: None).start()
    except RuntimeError:
        return "denied"
    finally:
        release.set()
        first.join()
    return "allowed"


@contextmanager
def _answering(cap: ThreadCap, channel: socket.socket) -> Iterator[None]:
    """Answer the child's thread notifications from a thread of the test, until the block ends."""
    _, fds, _, _ = socket.recv_fds(channel, 16, 1)
    listener = fds[0]
    stop_r, stop_w = os.pipe()

    def serve() -> None:
        while listener in select.select([listener, stop_r], [], [])[0] and cap.answer_one(listener):
            pass

    server = threading.Thread(target=serve)
    server.start()
    try:
        yield
    finally:
        os.write(stop_w, b"x")
        server.join()
        for fd in (listener, stop_r, stop_w):
            os.close(fd)


def _probe_in_filtered_child(other: int) -> dict[str, str]:
    compiled = seccomp.compile_filter()
    read_fd, write_fd = os.pipe()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_fd)
            seccomp.install_common(compiled)
            me = os.getpid()
            listener = seccomp.install_thread_counter(compiled)
            socket.send_fds(theirs, [b"threads"], [listener])
            os.close(listener)
            seccomp.install_child(seccomp.child_program(compiled, me))
            threads: list[int] = []
            worker = threading.Thread(target=lambda: threads.append(1))
            worker.start()
            worker.join()
            _until_the_kernel_counts_one_thread()  # join returns before the task is gone
            found = {
                "thread": "allowed" if threads else "denied",
                "a thread over the cap": _second_thread_while_the_first_runs(),
                "kill self": _attempt(lambda: os.kill(me, 0)),
                "kill other": _attempt(lambda: os.kill(other, 0)),
                "kill group": _attempt(lambda: os.kill(0, 0)),
                "kill everyone": _attempt(lambda: os.kill(-1, 0)),
                "tgkill other": _syscall(_NR["tgkill"], other, other, 0),
                "sigqueue self": _queue(_NR["rt_sigqueueinfo"], me),
                "sigqueue other": _queue(_NR["rt_sigqueueinfo"], other),
                "tgsigqueue other": _queue(_NR["rt_tgsigqueueinfo"], other, other),
                "pidfd_send_signal": _syscall(_NR["pidfd_send_signal"], 0, 0, 0, 0),
                "pidfd_open": _syscall(_NR["pidfd_open"], other, 0),
                "prlimit self": _attempt(lambda: resource.prlimit(0, resource.RLIMIT_NOFILE)),
                "prlimit by own pid": _attempt(lambda: resource.prlimit(me, resource.RLIMIT_NOFILE)),
                "prlimit other": _attempt(lambda: resource.prlimit(other, resource.RLIMIT_NOFILE)),
                "setpriority self": _attempt(lambda: os.setpriority(os.PRIO_PROCESS, 0, os.nice(0))),
                "setpriority other": _attempt(lambda: os.setpriority(os.PRIO_PROCESS, other, os.nice(0))),
                "getpriority of the uid": _attempt(lambda: os.getpriority(os.PRIO_USER, 0)),
                "getpriority of the group": _attempt(lambda: os.getpriority(os.PRIO_PGRP, 0)),
                "ioprio_set other": _syscall(_NR["ioprio_set"], _IOPRIO_WHO_PROCESS, other, 0),
                "sched_setaffinity self": _attempt(lambda: os.sched_setaffinity(0, os.sched_getaffinity(0))),
                "sched_setaffinity other": _attempt(lambda: os.sched_setaffinity(other, os.sched_getaffinity(0))),
                "sched_setscheduler other": _attempt(
                    lambda: os.sched_setscheduler(other, os.SCHED_OTHER, os.sched_param(0))
                ),
                "sched_setparam other": _attempt(lambda: os.sched_setparam(other, os.sched_param(0))),
                "setuid": _attempt(lambda: os.setuid(0)),
                "setgroups": _attempt(lambda: os.setgroups([])),
                "fork": _attempt(os.fork),
                "exec": _attempt(lambda: os.execv("/bin/true", ["true"])),  # noqa: S606 - must be refused
            }
            os.write(write_fd, json.dumps(found).encode())
        except BaseException:  # noqa: BLE001 - reported to the test rather than lost with the child
            os.write(write_fd, json.dumps({"child failed": traceback.format_exc()}).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    theirs.close()
    with _answering(ThreadCap(limit=2), ours), os.fdopen(read_fd, "rb") as source:
        data = source.read()
    ours.close()
    os.waitpid(pid, 0)
    result: dict[str, str] = json.loads(data)
    return result


def test_a_child_may_only_signal_itself_start_threads_up_to_its_cap_and_never_change_uid_fork_or_exec() -> None:
    """Signals, and the calls that set another process's limits, priority or CPUs, reach only
    the child itself: without root every widget shares the executor's uid."""
    found = _probe_in_filtered_child(os.getpid())
    allowed = {
        "thread", "kill self", "sigqueue self",
        "prlimit self", "prlimit by own pid", "setpriority self", "sched_setaffinity self",
    }  # fmt: skip
    assert {name for name, outcome in found.items() if outcome == "allowed"} == allowed, found
    for name in found.keys() - allowed:
        assert found[name] == "denied", (name, found[name])
