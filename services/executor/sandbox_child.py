"""Runs inside the widget process: the only code that executes next to widget code.

Started by the subprocess runner as ``python -I sandbox_child.py`` with an empty
environment, (as root) already switched to an unprivileged uid of its own slot. It imports only
the standard library and the widget runtime, applies resource limits, runs
``get_sidebar_data(context)`` and writes one JSON envelope to the result pipe:
``{"ok": true, "value": ...}`` or ``{"ok": false, "error": {"type", "message"}}``.
Widget ``print`` output goes to stdout, which the parent captures as run logs.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys
import traceback
from collections.abc import Callable
from types import CodeType
from typing import Any

WIDGET_FILENAME = "<widget>"


_PR_SET_DUMPABLE = 4


def _make_undumpable() -> None:
    # Other widget processes, even under the same uid, may not read this one's
    # memory or /proc entries, nor ptrace it.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def _apply_limits(memory_bytes: int, cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))


def _widget_line(exc: BaseException) -> int | None:
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == WIDGET_FILENAME:
            line = frame.lineno
    return line


def failure(kind: str, exc: BaseException) -> dict[str, Any]:
    line = _widget_line(exc)
    where = f" (line {line})" if line else ""
    text = str(exc)
    message = f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"
    return {"ok": False, "error": {"type": kind, "message": message}}


def run_widget(compiled: Callable[[], CodeType], namespace: dict[str, Any], context: Any) -> dict[str, Any]:
    """Exec the widget's module in ``namespace`` and call ``get_sidebar_data(context)``: its envelope.
    Shared with the zygote's children (sandbox/child.py), which compile once per process."""
    try:
        exec(compiled(), namespace)  # noqa: S102 - running widget code is this process's purpose
        function = namespace.get("get_sidebar_data")
        if not callable(function):
            return {"ok": False, "error": {"type": "invalid_widget", "message": "get_sidebar_data is not defined"}}
        return {"ok": True, "value": function(context)}
    except MemoryError as exc:
        return failure("memory", exc)
    except SyntaxError as exc:
        return {"ok": False, "error": {"type": "invalid_widget", "message": f"line {exc.lineno}: {exc.msg}"}}
    except BaseException as exc:  # noqa: BLE001 - SystemExit and friends are widget failures too
        return failure("exception", exc)


def encode(envelope: dict[str, Any]) -> bytes:
    """The envelope as JSON, or an ``invalid_return`` one when the value is not JSON."""
    try:
        return json.dumps(envelope, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        message = f"return value is not JSON: {exc}"
    except RecursionError:
        message = "return value is not JSON: it nests too deeply or refers to itself"
    return json.dumps({"ok": False, "error": {"type": "invalid_return", "message": message}}).encode()


def main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    result_fd = int(request["result_fd"])
    _make_undumpable()
    _apply_limits(int(request["memory_limit_bytes"]), int(request["cpu_seconds"]))
    namespace: dict[str, Any] = {"__name__": "widget", "__builtins__": __builtins__}
    envelope = run_widget(lambda: compile(request["code"], WIDGET_FILENAME, "exec"), namespace, request["context"])
    sys.stdout.flush()
    payload = encode(envelope)
    with os.fdopen(result_fd, "wb") as result:
        result.write(payload)


if __name__ == "__main__":
    main()
