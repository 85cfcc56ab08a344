"""The zygote: a warm interpreter that forks sandboxed widget processes ahead of their jobs.

Started by the executor as ``python -I -m executor.sandbox.zygote FD`` with an
empty environment, so it never holds the service's credentials. It pre-imports
the widget runtime, builds the TLS context, freezes the heap (``gc.freeze``) so
children share its pages, and then serves a SOCK_SEQPACKET control socket.

It keeps a few *spares*: children forked ahead of their jobs, which apply the
job-independent layers and wait on a private channel for one assignment (see
child.py). Each spare's channel goes to the executor, which dispatches a job to
it directly, so neither fork() nor a zygote round trip is on a job's critical
path. A child takes one job, or, as a warm worker, the following jobs of the same
business, widget and code, which the executor sends it over the same channel.

Messages (JSON, one per datagram):

- zygote -> executor ``{"spare": pid}`` with one fd, the spare's channel;
- executor -> zygote ``{"op": "took", "pid"}``, sent just before it dispatches a job
  to that spare: fork another;
- zygote -> executor ``{"pid", "status"}`` when a child ends (raw wait status);
- executor -> zygote ``{"op": "layers"}``, answered with ``{"layers": {...}}``;
- zygote -> executor ``{"threads": true}`` with one fd, once at start-up: the listener of
  the thread counter every child inherits (seccomp.py), which the executor serves.

When the control socket closes, the zygote kills its children and exits.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from executor.sandbox import child, landlock, seccomp
from executor.sandbox.runtime import preload
from executor.sandbox.warmup import warm_up_http_clients

_MAX_MESSAGE = 64 * 1024
_SPARE_RETRY_S = 0.1


def probe_layers() -> dict[str, Any]:
    abi = landlock.abi_version()
    return {
        "rlimits": True,
        "uid_per_slot": os.geteuid() == 0,
        "no_new_privs": True,
        "seccomp": seccomp.available(),
        "landlock": abi > 0,
        "landlock_abi": abi,
        "landlock_net": abi >= 4,
        "landlock_scope": abi >= 6,
        "thread_cap": False,  # set once the thread counter is loaded
        # Brokered connections; kernel-enforced where seccomp refuses the widget its own sockets.
        "egress_guard": True,
    }


def _send(control: socket.socket, message: dict[str, Any]) -> None:
    # The control messages are small JSON; the compiled filter never leaves the zygote.
    control.send(json.dumps(message).encode())


class _Children:
    """The zygote's children: spares handed to the executor, and the ones running jobs."""

    def __init__(self, control: socket.socket, config: dict[str, Any]) -> None:
        self._control = control
        self._config = config
        self.spares: set[int] = set()
        self.running: set[int] = set()
        self._next_fork = 0.0  # a spare that died unassigned delays the next: never a fork loop

    def fork_delay(self) -> float | None:
        """Seconds until the next spare should be forked; None when there are enough."""
        if len(self.spares) >= self._config["spares"]:
            return None
        return max(0.0, self._next_fork - time.monotonic())

    def fork_spare(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                self._control.close()
                ours.close()
                child.serve(self._config, theirs)
            self.spares.add(pid)
            socket.send_fds(self._control, [json.dumps({"spare": pid}).encode()], [ours.fileno()])
        finally:
            ours.close()
            theirs.close()

    def took(self, pid: int) -> None:
        if pid in self.spares:
            self.spares.discard(pid)
            self.running.add(pid)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.spares:
                self.spares.discard(pid)
                self._next_fork = time.monotonic() + _SPARE_RETRY_S
            self.running.discard(pid)
            # The executor may have dispatched to it before its "took" arrived: always report.
            _send(self._control, {"pid": pid, "status": status})

    def kill_all(self) -> None:
        for pid in (*self.running, *self.spares):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def _handle_messages(control: socket.socket, children: _Children, config: dict[str, Any]) -> bool:
    """Handle every pending message; False when the executor closed the socket."""
    while True:
        try:
            data = control.recv(_MAX_MESSAGE, socket.MSG_DONTWAIT)  # fds, if any were sent, are dropped
        except BlockingIOError:
            return True
        if not data:
            return False
        message = json.loads(data)
        if message.get("op") == "took" and isinstance(message.get("pid"), int):
            children.took(message["pid"])
        elif message.get("op") == "layers":
            _send(control, {"layers": config["layers"]})
        else:
            _send(control, {"error": f"bad zygote request: {message.get('op')!r}"})


def serve(control: socket.socket, config: dict[str, Any]) -> None:
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children = _Children(control, config)
    try:
        while True:
            # Messages first; when idle and short of spares, fork the next one.
            ready, _, _ = select.select([control.fileno(), wake_read], [], [], children.fork_delay())
            if not ready:
                children.fork_spare()
                continue
            # Every pending message before reaping: the executor says "took" before it
            # dispatches, so a child that has ended is almost never mistaken for a lost
            # spare (if it is, its status is still reported; the next fork waits 0.1 s).
            if control.fileno() in ready and not _handle_messages(control, children, config):
                return
            if wake_read in ready:
                os.read(wake_read, 4096)
                children.reap()
    except (BrokenPipeError, ConnectionResetError):
        return  # the executor is gone
    finally:
        children.kill_all()


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    config: dict[str, Any] = json.loads(sys.stdin.readline())
    with contextlib.suppress(OSError):  # only an optimisation
        # Inherited by every widget process: woken (its job sent, its connection made), it
        # waits for the running service to yield the CPU rather than preempting it.
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    preload(config.get("extra_ca_file"))
    with contextlib.suppress(Exception):  # only an optimisation: a cold child still works
        warm_up_http_clients()
    config["layers"] = probe_layers()
    if config["layers"]["landlock"]:
        config["landlock_ruleset"] = landlock.build_ruleset(config["read_only_paths"], config["connect_ports"])
    if config["layers"]["seccomp"]:
        config["seccomp_filter"] = seccomp.compile_filter()
        seccomp.install_common(config["seccomp_filter"])  # the zygote too: it never execs, mounts or traces
        with contextlib.suppress(OSError):  # no user notification here: threads go uncounted, reported as missing
            listener = seccomp.install_thread_counter(config["seccomp_filter"])
            # Sent and closed before the first fork: no child may hold its own approvals.
            socket.send_fds(control, [json.dumps({"threads": True}).encode()], [listener])
            os.close(listener)
            config["layers"]["thread_cap"] = True
    gc.collect()
    gc.freeze()
    serve(control, config)


if __name__ == "__main__":
    main()
