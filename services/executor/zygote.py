"""The executor's side of the sandbox zygote (sandbox/zygote.py): spawning it, dispatching
jobs to its spares, and reading what it reports.

The executor keeps the credentials; the zygote is a separate, fresh interpreter
with an empty environment, so nothing forked from it can inherit them. The
zygote forks spares ahead of time and hands the executor each spare's channel;
it reports every exit of its children, and its own death closes its control socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from executor.thread_cap import ThreadCap
from executor.workers import WorkerPool

log = structlog.get_logger(__name__)

_ANSWER_S = 10.0
_MAX_MESSAGE = 64 * 1024


class SandboxFailure(RuntimeError):
    """The zygote died or stopped answering."""


@dataclass
class Zygote:
    """One zygote process as the executor holds it: its control socket, the spares waiting
    for a job, and the exit statuses that running jobs wait for."""

    process: asyncio.subprocess.Process
    control: socket.socket
    pool: WorkerPool  # told of its idle workers' deaths, and of its own
    max_threads: int
    spares: dict[int, socket.socket] = field(default_factory=dict)  # pid -> channel, oldest first
    spare_ready: asyncio.Event = field(default_factory=asyncio.Event)
    exits: dict[int, asyncio.Future[int]] = field(default_factory=dict)
    layers: asyncio.Future[dict[str, Any]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    threads: ThreadCap | None = None
    alive: bool = True

    @classmethod
    async def spawn(cls, python: str, config: dict[str, Any], max_threads: int, pool: WorkerPool) -> Zygote:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = await asyncio.create_subprocess_exec(
                python,
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
        process.stdin.write(json.dumps(config).encode() + b"\n")
        await process.stdin.drain()
        process.stdin.close()
        parent.setblocking(False)
        zygote = cls(process=process, control=parent, pool=pool, max_threads=max_threads)
        asyncio.get_running_loop().add_reader(parent.fileno(), zygote._on_readable)
        zygote._send({"op": "layers"})
        return zygote

    async def isolation_layers(self) -> dict[str, Any]:
        """The isolation layers the zygote found on this kernel."""
        return await asyncio.wait_for(asyncio.shield(self.layers), _ANSWER_S)

    async def dispatch(self, assignment: dict[str, Any], fds: list[int]) -> tuple[int, socket.socket]:
        """Send one job to a waiting spare; returns its pid and channel, which the caller
        now owns. A spare that died meanwhile is skipped."""
        data = json.dumps(assignment).encode()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _ANSWER_S
        while True:
            while not self.spares:
                if not self.alive:
                    raise SandboxFailure("the sandbox zygote exited; it restarts for the next job")
                self.spare_ready.clear()
                try:
                    await asyncio.wait_for(self.spare_ready.wait(), max(0.0, deadline - loop.time()))
                except TimeoutError as exc:
                    raise SandboxFailure("the sandbox zygote did not provide a widget process") from exc
            pid = next(iter(self.spares))
            channel = self.spares.pop(pid)
            self.exits[pid] = loop.create_future()
            try:
                # "took" first: the zygote forks a replacement, and having read it before
                # the child's exit, does not take the child for a spare that died unassigned.
                self._send({"op": "took", "pid": pid})
                socket.send_fds(channel, [data], fds)
            except SandboxFailure:
                self.exits.pop(pid, None)
                channel.close()
                raise
            except OSError:
                self.exits.pop(pid, None)
                channel.close()
                continue  # it died unassigned; its exit is reported and ignored
            except BaseException:
                channel.close()
                raise
            return pid, channel

    def reaped(self, pid: int) -> bool:
        """The zygote has reported ``pid``'s exit status: the pid is free for another process."""
        future = self.exits.get(pid)
        return future is not None and future.done() and future.exception() is None

    async def stop(self) -> None:
        """Fail the jobs waiting on it, close what the executor holds of it, and end it."""
        if self.alive:
            asyncio.get_running_loop().remove_reader(self.control.fileno())
            self.alive = False
            _fail(self.exits, SandboxFailure("the sandbox is shutting down"))
            self.spare_ready.set()  # jobs waiting for a spare see it is gone
        self._release()
        self.control.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 5)
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def _release(self) -> None:
        """Close what the executor holds of this zygote: the spares' channels, the thread counter's listener."""
        for channel in self.spares.values():
            channel.close()  # the spare reads EOF and exits
        self.spares.clear()
        if self.threads is not None:
            self.threads.close()
            self.threads = None

    def _send(self, message: dict[str, Any]) -> None:
        if not self.alive:
            raise SandboxFailure("the sandbox zygote is not running")
        data = json.dumps(message).encode()
        for _ in range(1000):
            try:
                self.control.send(data)
                return
            except BlockingIOError:
                time.sleep(0.001)  # the zygote answers in microseconds; this never spins long
        raise SandboxFailure("the sandbox zygote does not read its control socket")

    def _on_readable(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.control, _MAX_MESSAGE, 1)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self._died()
                return
            message = json.loads(data)
            if "spare" in message and len(fds) == 1:
                os.set_inheritable(fds[0], False)
                self.spares[message["spare"]] = socket.socket(fileno=fds[0])
                self.spare_ready.set()
                continue
            if "threads" in message and len(fds) == 1 and self.threads is None:
                os.set_inheritable(fds[0], False)
                self.threads = ThreadCap(self.max_threads)
                self.threads.watch(fds[0])
                continue
            for fd in fds:
                os.close(fd)
            if "layers" in message and not self.layers.done():
                self.layers.set_result(message["layers"])
            elif "status" in message:
                spare = self.spares.pop(message["pid"], None)
                if spare is not None:
                    spare.close()  # died before it had a job
                self.pool.forget(message["pid"])  # an idle worker that died by itself
                exit_future = self.exits.get(message["pid"])
                if exit_future is not None and not exit_future.done():
                    exit_future.set_result(message["status"])
            elif "error" in message:
                log.error("sandbox.zygote_refused", error=message["error"])

    def _died(self) -> None:
        self.alive = False
        asyncio.get_running_loop().remove_reader(self.control.fileno())
        self._release()
        self.pool.retire_all("zygote_gone")  # its idle workers would take no job from the next zygote
        self.spare_ready.set()  # waiters see it is gone
        _fail(self.exits, SandboxFailure("the sandbox zygote exited; it restarts for the next job"))
        log.error("sandbox.zygote_died")


def _fail(exits: dict[int, asyncio.Future[int]], failure: SandboxFailure) -> None:
    """Wake every job waiting for an exit status; a job that already has its result never looks."""
    for future in exits.values():
        if not future.done():
            future.set_exception(failure)
            future.add_done_callback(lambda done: done.exception())  # retrieved: no "never retrieved" noise
