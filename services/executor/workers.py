"""Which process runs a job: the uid slots, and the warm workers idling in some of them.

A worker is a sandboxed child that has finished a job cleanly. It may wait for the
next job of the same key (business, widget, hash of the code) and never serves
another key. An idle worker keeps its uid slot; a job that finds no free slot takes
the slot of the least recently used idle worker (of another key: one of its own it
would have reused), which is killed first. Idle workers are retired after
``idle_s`` seconds, so a quiet executor holds no processes but its spares. How a
worker's process is stopped, continued and retired: worker_lifecycle.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

WorkerKey = tuple[str, str, str]  # business id, widget id, sha256 of the code


def worker_key(business_id: str | None, widget_id: str | None, code: str) -> WorkerKey | None:
    """The key a job's worker is bound to; None (one job per process) without a business and widget."""
    if not business_id or not widget_id:
        return None
    return business_id, widget_id, hashlib.sha256(code.encode()).hexdigest()


@dataclass(eq=False)
class Worker:
    pid: int
    channel: socket.socket
    uid: int
    key: WorkerKey | None  # None: one job only
    cpu_hard_s: int  # RLIMIT_CPU's hard limit, fixed at its first job
    zygote: object = None  # the zygote that forked it: it serves no other zygote's executor state
    jobs: int = 0
    cpu_used_s: float = 0.0  # when it was parked (stopped)
    idle_since: float = 0.0
    retired: bool = False
    exited: bool = False  # reaped, or known to have exited: its pid may be another process's


Retire = Callable[[Worker, str], None]


class WorkerPool:
    """Uid slots, free or held by idle workers. ``retire(worker, reason)`` kills a worker
    and closes its channel (once, however often it is called); ``discard`` then frees its slot."""

    def __init__(
        self, first_uid: int, slots: int, idle_s: float, retire: Retire, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._free = deque(range(first_uid, first_uid + slots))
        self._idle: OrderedDict[int, Worker] = OrderedDict()  # by pid, least recently used first
        self._idle_s = idle_s
        self._retire = retire
        self._clock = clock
        self._changed = asyncio.Event()
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> list[Worker]:
        return list(self._idle.values())

    async def acquire(self, key: WorkerKey | None) -> Worker | int:
        """An idle worker of ``key``, or else a free uid, the LRU idle worker's if need be;
        waits while every slot runs a job."""
        while True:
            if key is not None and (worker := self._take(key)) is not None:
                return worker
            if self._free:
                return self._free.popleft()
            if self._idle:
                _, victim = self._idle.popitem(last=False)
                self._retire(victim, "evicted")
                return victim.uid  # the slot goes to the caller, not back to the free ones
            self._changed.clear()
            await self._changed.wait()

    def park(self, worker: Worker) -> None:
        """``worker`` finished a job cleanly and waits for the next one of its key."""
        worker.idle_since = self._clock()
        self._idle[worker.pid] = worker
        self._changed.set()
        if self._expiry is None:
            self._schedule(self._idle_s)

    def release(self, uid: int) -> None:
        """The process of slot ``uid`` is dead (killed): the slot is free."""
        self._free.append(uid)
        self._changed.set()

    def discard(self, worker: Worker, reason: str) -> None:
        """``worker`` (idle or not) takes no more jobs: retire it if not yet, and free its slot."""
        self._idle.pop(worker.pid, None)
        self._retire(worker, reason)
        self.release(worker.uid)

    def forget(self, pid: int) -> None:
        """An idle worker died by itself: drop it and free its slot."""
        worker = self._idle.get(pid)
        if worker is not None:
            worker.exited = True  # reaped: its pid may be another process's by now
            self.discard(worker, "died")

    def retire_all(self, reason: str) -> None:
        for worker in list(self._idle.values()):
            self.discard(worker, reason)
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def expire(self) -> float | None:
        """Retire the workers idle for ``idle_s``; seconds until the next one is due, if any."""
        now = self._clock()
        for worker in list(self._idle.values()):
            if now - worker.idle_since < self._idle_s:
                return worker.idle_since + self._idle_s - now
            self.discard(worker, "idle")
        return None

    def _take(self, key: WorkerKey) -> Worker | None:
        """The most recently used idle worker of ``key``: the others may then idle out."""
        for pid in reversed(self._idle):
            if self._idle[pid].key == key:
                return self._idle.pop(pid)
        return None

    def _schedule(self, delay: float) -> None:
        self._expiry = asyncio.get_running_loop().call_later(delay, self._on_expiry)

    def _on_expiry(self) -> None:
        self._expiry = None
        due = self.expire()
        if due is not None:
            self._schedule(due)
