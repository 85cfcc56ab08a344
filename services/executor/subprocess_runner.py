"""The runner adapter that starts a fresh, locked-down Python process per job.

Isolation this layer provides:
- an empty environment and ``python -I``: no inherited variables, no user site;
- when the executor is root, each concurrent slot runs its child under a uid of
  its own (no supplementary groups), so ``/proc/<pid>/environ`` of the services
  is closed to it and widgets running side by side cannot signal one another;
- the child marks itself undumpable, so even same-uid processes cannot read its memory;
- a new session, killed as a whole group at the wall-time limit and after every run;
- rlimits set by the child before widget code runs: address space, CPU, no core files;
- stdout captured up to a cap (the rest is drained and dropped), and the result
  read from a separate pipe up to a cap.
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

from executor.runner import RunOutcome, RunRequest

CHILD_SCRIPT = Path(__file__).with_name("sandbox_child.py")
_PIPE_GRACE_S = 1.0
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int
    log_bytes: int
    result_bytes: int
    # As root: one uid per concurrent run, taken from this range, and one shared gid.
    first_uid: int
    slots: int
    gid: int


@dataclass
class _Capture:
    data: bytearray
    total: int = 0


async def _read_capped(reader: asyncio.StreamReader, limit: int) -> _Capture:
    capture = _Capture(bytearray())
    while chunk := await reader.read(_CHUNK):
        capture.total += len(chunk)
        room = limit - len(capture.data)
        if room > 0:
            capture.data += chunk[:room]
    return capture


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else "?"
        return f"widget process was killed by signal {name}"
    return f"widget process exited with code {returncode} before returning a result"


class SubprocessRunner:
    def __init__(self, limits: SandboxLimits, python: str = sys.executable) -> None:
        self._limits = limits
        self._python = python
        self._drop_privileges = os.geteuid() == 0
        self._free_uids: asyncio.Queue[int] = asyncio.Queue()
        for slot in range(limits.slots):
            self._free_uids.put_nowait(limits.first_uid + slot)

    @property
    def isolates_by_uid(self) -> bool:
        return self._drop_privileges

    async def run(self, request: RunRequest) -> RunOutcome:
        uid = await self._free_uids.get()
        try:
            return await self._run_as(uid, request)
        finally:
            self._free_uids.put_nowait(uid)

    async def _run_as(self, uid: int, request: RunRequest) -> RunOutcome:
        read_fd, write_fd = os.pipe()
        started = time.perf_counter()
        try:
            process = await self._spawn(write_fd, uid)
        finally:
            os.close(write_fd)
        result_reader = await self._reader_for(read_fd)
        assert process.stdin is not None
        assert process.stdout is not None
        payload = self._request_payload(request, write_fd)
        logs_task = asyncio.create_task(_read_capped(process.stdout, self._limits.log_bytes))
        result_task = asyncio.create_task(_read_capped(result_reader, self._limits.result_bytes + 1))
        timed_out = False
        try:
            process.stdin.write(payload)
            await process.stdin.drain()
            process.stdin.close()
            await asyncio.wait_for(process.wait(), timeout=request.timeout_s)
        except (TimeoutError, BrokenPipeError, ConnectionResetError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            self._kill(process)
            await process.wait()
        finally:
            if process.returncode is None:  # cancelled: never leave a widget behind
                self._kill(process)
                await process.wait()
            self._kill(process)  # whatever the widget started in its group dies with it
        duration = time.perf_counter() - started
        logs, result = await self._collect(logs_task, result_task)
        return self._outcome(process.returncode, timed_out, duration, logs, result, request.timeout_s)

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

    @staticmethod
    async def _reader_for(fd: int) -> asyncio.StreamReader:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_CHUNK)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
        return reader

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

    @staticmethod
    def _kill(process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    @staticmethod
    async def _collect(
        logs_task: asyncio.Task[_Capture], result_task: asyncio.Task[_Capture]
    ) -> tuple[_Capture, _Capture]:
        # A grandchild that escaped the process group could hold the pipes open.
        done, pending = await asyncio.wait({logs_task, result_task}, timeout=_PIPE_GRACE_S)
        for task in pending:
            task.cancel()
        logs = logs_task.result() if logs_task in done else _Capture(bytearray())
        result = result_task.result() if result_task in done else _Capture(bytearray())
        return logs, result

    def _outcome(
        self, returncode: int | None, timed_out: bool, duration: float, logs: _Capture, result: _Capture, timeout: float
    ) -> RunOutcome:
        log_text = logs.data.decode("utf-8", errors="replace")
        truncated = logs.total > len(logs.data)
        if truncated:
            log_text += f"\n[logs truncated: {logs.total} bytes written, first {len(logs.data)} kept]"
        common: dict[str, Any] = {"duration_s": duration, "logs": log_text, "logs_truncated": truncated}
        if timed_out:
            message = f"widget did not finish within its {timeout:g} s timeout and was stopped"
            return RunOutcome("timeout", error_type="timeout", error_message=message, **common)
        if result.total > self._limits.result_bytes:
            message = f"return value is {result.total} bytes of JSON, over the {self._limits.result_bytes} byte limit"
            return RunOutcome("error", error_type="output_too_large", error_message=message, **common)
        if not result.data:
            kind = "crashed" if returncode not in (None, 0) else "no_result"
            return RunOutcome("error", error_type=kind, error_message=_describe_exit(returncode or 0), **common)
        try:
            envelope = json.loads(result.data)
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict):
            message = "the widget process wrote an unreadable result"
            return RunOutcome("error", error_type="crashed", error_message=message, **common)
        if envelope.get("ok"):
            return RunOutcome("ok", value=envelope.get("value"), **common)
        error = envelope.get("error") or {}
        return RunOutcome("error", error_type=str(error.get("type")), error_message=str(error.get("message")), **common)
