"""Threads per widget process, counted by the executor through seccomp user notification.

``RLIMIT_NPROC`` counts every task of a uid on the node. When the executor is not root,
every widget shares its uid (and in Kubernetes, possibly other pods' too), so a limit of
32 would be hit by tasks that are not the widget's. Instead, the zygote's thread counter
(sandbox/seccomp.py), inherited by every child, makes a thread-creating ``clone`` wait for
the executor (``SECCOMP_RET_USER_NOTIF``), which lets it go on while that process has
fewer than ``limit`` threads, and otherwise fails it with ``EAGAIN`` (Python raises
``RuntimeError: can't start new thread``). A child cannot fork, so its threads are all
the tasks it can make. One listener serves all of a zygote's children: no per-job cost.

Concurrent creations are judged one at a time against the count in ``/proc``; a thread
still being created is not counted yet, so the limit can be passed by the number of
threads creating at the same instant (at most doubling it), never without bound. A
process whose count cannot be read (it is exiting) gets no new thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import select
import struct

# struct seccomp_notif: id u64, pid u32, flags u32, seccomp_data (64 bytes); seccomp_notif_resp: id, val, error, flags
_NOTIF, _RESPONSE = struct.Struct("=QII64x"), struct.Struct("=QqiI")
_IOCTL_RECV = 0xC0000000 | (_NOTIF.size << 16) | (ord("!") << 8) | 0
_IOCTL_SEND = 0xC0000000 | (_RESPONSE.size << 16) | (ord("!") << 8) | 1
_FLAG_CONTINUE = 1


def threads_of(pid: int) -> int | None:
    """The thread count of the process that ``pid`` (a task of it) belongs to."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"Threads:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class ThreadCap:
    """Serves one child's thread notifications: continue below ``limit`` threads, else EAGAIN."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.refused = 0
        self._listener: int | None = None

    def watch(self, listener: int) -> None:
        """Serve ``listener`` on the running loop until ``close``; a second listener is refused."""
        if self._listener is not None:
            os.close(listener)
            return
        self._listener = listener
        asyncio.get_running_loop().add_reader(listener, self._on_readable)

    def close(self) -> None:
        self._stop_watching()
        if self._listener is not None:
            os.close(self._listener)  # a thread still waiting gets ENOSYS
            self._listener = None

    def _stop_watching(self) -> None:
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener)

    def _on_readable(self) -> None:
        assert self._listener is not None
        if not self.answer_one(self._listener):
            self._stop_watching()

    def answer_one(self, listener: int) -> bool:
        """Answer the next pending notification; False once the process is gone (only a
        hang-up is pending: reading the listener then would block)."""
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        events = poller.poll(0)
        if not events or not events[0][1] & select.POLLIN:
            return not events
        notification = bytearray(_NOTIF.size)
        try:
            fcntl.ioctl(listener, _IOCTL_RECV, notification, True)
        except OSError:
            return True  # the thread was killed meanwhile (ENOENT), or a signal interrupted (EINTR)
        notification_id, pid, _ = _NOTIF.unpack(notification)
        current = threads_of(pid)
        allowed = current is not None and current < self.limit
        if not allowed:
            self.refused += 1
        response = _RESPONSE.pack(notification_id, 0, 0 if allowed else -errno.EAGAIN, _FLAG_CONTINUE if allowed else 0)
        with contextlib.suppress(OSError):  # ENOENT: the waiting thread's process died
            fcntl.ioctl(listener, _IOCTL_SEND, bytearray(response), True)
        return True
