"""The reference runner: a fresh, locked-down Python process per job.

Production uses the zygote (zygote_runner.py); this path is what it is
measured against in benchmarks/executor.py. Isolation here:
- an empty environment and ``python -I``: no inherited variables, no user site;
- when the executor is root, each concurrent slot runs its child under a uid of
  its own (no supplementary groups);
- the child marks itself undumpable and applies rlimits (sandbox_child.py);
- a new session, killed as a whole group at the wall-time limit and after every run;
- stdout captured up to a cap, and the result read from a separate pipe up to a cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor.capture import build_outcome, collect, read_capped, read_pipe_capped
from executor.runner import RunOutcome, RunRequest
from executor.slots import UidSlots

CHILD_SCRIPT = Path(__file__).with_name("sandbox_child.py")
_PIPE_GRACE_S = 1.0


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int
    log_bytes: int
    result_bytes: int
    # As root: one uid per concurrent run, taken from this range, and one shared gid.
    first_uid: int
    slots: int
    gid: int


class SubprocessRunner:
    def __init__(self, limits: SandboxLimits, python: str = sys.executable) -> None:
        self._limits = limits
        self._python = python
        self._drop_privileges = os.geteuid() == 0
        self._slots = UidSlots(limits.first_uid, limits.slots)

    async def run(self, request: RunRequest) -> RunOutcome:
        async with self._slots.take() as uid:
            return await self._run_as(uid, request)

    async def _run_as(self, uid: int, request: RunRequest) -> RunOutcome:
        read_fd, write_fd = os.pipe()
        started = time.perf_counter()
        try:
            process = await self._spawn(write_fd, uid)
        finally:
            os.close(write_fd)
        assert process.stdin is not None
        assert process.stdout is not None
        logs_task = asyncio.create_task(read_capped(process.stdout, self._limits.log_bytes))
        result_task = read_pipe_capped(read_fd, self._limits.result_bytes + 1)
        timed_out = False
        try:
            process.stdin.write(self._request_payload(request, write_fd))
            await process.stdin.drain()
            process.stdin.close()
            await asyncio.wait_for(process.wait(), timeout=request.timeout_s)
        except (TimeoutError, BrokenPipeError, ConnectionResetError) as exc:
            timed_out = isinstance(exc, TimeoutError)
        finally:
            _kill_group(process.pid)  # on time-out, cancellation, and whatever the widget left behind
            await process.wait()
        duration = time.perf_counter() - started
        logs, result = await collect((logs_task, result_task), _PIPE_GRACE_S)
        return build_outcome(
            exit_code=process.returncode or 0,
            timed_out=timed_out,
            duration=duration,
            logs=logs,
            result=result,
            timeout=request.timeout_s,
            result_limit=self._limits.result_bytes,
        )

    async def _spawn(self, write_fd: int, uid: int) -> asyncio.subprocess.Process:
        privileges: dict[str, Any] = {}
        if self._drop_privileges:
            privileges = {"user": uid, "group": self._limits.gid, "extra_groups": []}
        return await asyncio.create_subprocess_exec(
            self._python,
            "-I",
            "-X",
            "utf8",
            str(CHILD_SCRIPT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={},
            cwd="/",
            pass_fds=(write_fd,),
            start_new_session=True,
            **privileges,
        )

    def _request_payload(self, request: RunRequest, write_fd: int) -> bytes:
        return json.dumps(
            {
                "code": request.code,
                "context": request.context,
                "result_fd": write_fd,
                "memory_limit_bytes": self._limits.memory_bytes,
                "cpu_seconds": max(1, int(request.timeout_s) + 1),
            }
        ).encode()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
