"""Reading a widget process's output: capped pipes, and turning what came back into an outcome.

Shared by every runner, so all of them report the same statuses and messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from dataclasses import dataclass, field
from typing import Any

from executor.runner import RunOutcome

_CHUNK = 64 * 1024
_READS_PER_WAKEUP = 4  # 256 KiB at most, as much as one read of asyncio's pipe transport
# Error types of a process the sandbox had to stop, or that died: never reused, and they keep their status.
STOPPED = ("memory", "cpu_limit", "crashed", "sandbox_failure")


@dataclass
class Capture:
    data: bytearray = field(default_factory=bytearray)
    total: int = 0


async def read_capped(reader: asyncio.StreamReader, limit: int) -> Capture:
    """Keep the first ``limit`` bytes, drain and count the rest (a writer never blocks on us)."""
    capture = Capture()
    while chunk := await reader.read(_CHUNK):
        capture.total += len(chunk)
        room = limit - len(capture.data)
        if room > 0:
            capture.data += chunk[:room]
    return capture


def read_pipe_capped(fd: int, limit: int) -> asyncio.Future[Capture]:
    """``read_capped`` on a pipe's read end, straight from the event loop's selector (no
    transport, stream or task: a job reads two pipes). ``fd`` is owned from here on and
    closed on every way out: EOF, a read error, or the future cancelled."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Capture] = loop.create_future()
    capture = Capture()
    reading = True

    def close() -> None:
        nonlocal reading
        if reading:
            reading = False
            loop.remove_reader(fd)
            os.close(fd)

    def on_readable() -> None:
        # A few reads a wake-up, enough for a result and its EOF at once; never a loop to
        # the end: a widget that writes without pause must not keep the event loop (and
        # every other job's timers) in here.
        if future.done():  # cancelled: its done callback closes the fd
            return
        for _ in range(_READS_PER_WAKEUP):
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                return
            except OSError as exc:
                close()
                future.set_exception(exc)
                return
            if not chunk:
                close()
                future.set_result(capture)
                return
            capture.total += len(chunk)
            room = limit - len(capture.data)
            if room > 0:
                capture.data += chunk[:room]

    try:
        os.set_blocking(fd, False)
        loop.add_reader(fd, on_readable)
    except BaseException:
        os.close(fd)
        raise
    future.add_done_callback(lambda _: close())
    return future


async def collect(
    tasks: tuple[asyncio.Future[Capture], asyncio.Future[Capture]], grace_s: float
) -> tuple[Capture, Capture]:
    """Wait briefly for both pipes to close; a process that escaped the kill could hold them open."""
    done, pending = await asyncio.wait(set(tasks), timeout=grace_s)
    for task in pending:
        task.cancel()
    logs, result = (task.result() if task in done else Capture() for task in tasks)
    return logs, result


def describe_exit(status: int) -> str:
    if status < 0:
        number = -status
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        return f"widget process was killed by signal {name}"
    return f"widget process exited with code {status} before returning a result"


def build_outcome(
    *,
    exit_code: int,
    timed_out: bool,
    duration: float,
    logs: Capture,
    result: Capture,
    timeout: float,
    result_limit: int,
) -> RunOutcome:
    """``exit_code`` follows subprocess conventions: negative means killed by that signal."""
    log_text = logs.data.decode("utf-8", errors="replace")
    truncated = logs.total > len(logs.data)
    if truncated:
        log_text += f"\n[logs truncated: {logs.total} bytes written, first {len(logs.data)} kept]"
    common: dict[str, Any] = {"duration_s": duration, "logs": log_text, "logs_truncated": truncated}
    if timed_out:
        message = f"widget did not finish within its {timeout:g} s timeout and was stopped"
        return RunOutcome("timeout", error_type="timeout", error_message=message, **common)
    if result.total > result_limit:
        message = f"return value is {result.total} bytes of JSON, over the {result_limit} byte limit"
        return RunOutcome("error", error_type="output_too_large", error_message=message, **common)
    if not result.data:
        if exit_code == -signal.SIGXCPU:
            return RunOutcome("error", error_type="cpu_limit", error_message="widget used up its CPU time", **common)
        kind = "crashed" if exit_code != 0 else "no_result"
        return RunOutcome("error", error_type=kind, error_message=describe_exit(exit_code), **common)
    try:
        envelope = json.loads(result.data)
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict):
        message = "the widget process wrote an unreadable result"
        return RunOutcome("error", error_type="crashed", error_message=message, **common)
    elapsed = envelope.get("elapsed_s")  # the widget's own time, stamped by the sandbox around it
    if isinstance(elapsed, int | float):
        common["widget_s"] = float(elapsed)
    if envelope.get("ok"):
        return RunOutcome("ok", value=envelope.get("value"), **common)
    error = envelope.get("error") or {}
    return RunOutcome("error", error_type=str(error.get("type")), error_message=str(error.get("message")), **common)


def with_denials(outcome: RunOutcome, denials: list[str]) -> RunOutcome:
    """A refused connection fails the run as ``egress_denied``, even if the widget caught the
    refusal. A process the sandbox had to stop (timeout, limits, crash) keeps that status,
    which the kill metrics count, and the refusal is added to its message."""
    if not denials:
        return outcome
    refusal = denials[0] + (f" (and {len(denials) - 1} more refusals)" if len(denials) > 1 else "")
    if outcome.status == "timeout" or outcome.error_type in STOPPED:
        return RunOutcome(**{**vars(outcome), "error_message": f"{outcome.error_message}; before that, {refusal}"})
    if outcome.status == "ok":
        message = f"{refusal}; the widget caught the refusal and returned normally"
    else:
        message = f"{refusal}; the widget then ended with {outcome.error_type}: {outcome.error_message}"
    return RunOutcome(**{**vars(outcome), "status": "error", "value": None, "error_type": "egress_denied",
                         "error_message": message})  # fmt: skip
