"""The zygote: a warm interpreter that forks one sandboxed child per widget job.

Started by the executor as ``python -I -m executor.sandbox.zygote FD`` with an
empty environment, so it never holds the service's credentials. It pre-imports
the widget runtime, builds the TLS context, freezes the heap (``gc.freeze``) so
children share its pages, and then serves a SOCK_SEQPACKET control socket:

- ``{"op": "run", "id", "uid", "gid", "limits"}`` with three fds (request read
  end, log write end, result write end): fork a child, answer ``{"id", "pid"}``;
- when a child ends: ``{"pid", "status"}`` (the raw wait status);
- ``{"op": "layers"}``: answer which isolation layers this kernel offers.

A child is never reused. When the control socket closes, the zygote kills its
children and exits.
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
from typing import Any

from executor.sandbox import child, landlock, seccomp
from executor.sandbox.runtime import preload

_MAX_MESSAGE = 64 * 1024


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
        "egress_guard": True,
    }


def _send(control: socket.socket, message: dict[str, Any]) -> None:
    # The control messages are small JSON; the compiled filter never leaves the zygote.
    control.send(json.dumps(message).encode())


def _reap(control: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        _send(control, {"pid": pid, "status": status})


def _fork(control: socket.socket, message: dict[str, Any], fds: list[int], config: dict[str, Any]) -> int:
    request_fd, log_fd, result_fd = fds
    pid = os.fork()
    if pid == 0:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        child.run({**config, **message}, request_fd, log_fd, result_fd)
    for fd in fds:
        os.close(fd)
    return pid


def serve(control: socket.socket, config: dict[str, Any]) -> None:
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    try:
        while True:
            ready, _, _ = select.select([control.fileno(), wake_read], [], [])
            if wake_read in ready:
                os.read(wake_read, 4096)
                _reap(control, children)
            if control.fileno() not in ready:
                continue
            data, fds, _, _ = socket.recv_fds(control, _MAX_MESSAGE, 3)
            if not data:
                return
            message = json.loads(data)
            if message.get("op") == "layers":
                _send(control, {"layers": config["layers"]})
            elif message.get("op") == "run" and len(fds) == 3:
                pid = _fork(control, message, fds, config)
                children.add(pid)
                _send(control, {"id": message["id"], "pid": pid})
            else:
                for fd in fds:
                    os.close(fd)
                _send(control, {"id": message.get("id"), "error": "bad zygote request"})
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    config: dict[str, Any] = json.loads(sys.stdin.readline())
    preload(config.get("extra_ca_file"))
    config["layers"] = probe_layers()
    if config["layers"]["seccomp"]:
        config["seccomp_filter"] = seccomp.compile_filter()
    if config["layers"]["landlock"]:
        config["landlock_ruleset"] = landlock.build_ruleset(config["read_only_paths"], config["connect_ports"])
    gc.collect()
    gc.freeze()
    serve(control, config)


if __name__ == "__main__":
    main()
