"""Start the real services as processes and watch their JSON logs.

Waiting is on conditions (a log line appearing, a port answering), never on fixed sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import free_port as free_port  # the tests import it from here too

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "system-logs"

LogLine = dict[str, Any]


class ServiceProcess:
    """One service process; its stdout is parsed as JSON log lines as they arrive."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self._argv = argv
        self._env = env
        self.lines: list[LogLine] = []
        self.raw: list[str] = []
        self._changed = threading.Condition()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> ServiceProcess:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            self._argv,
            env=self._env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"log-{self.name}", daemon=True)
        self._reader.start()
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def exited(self) -> bool:
        return self._process is not None and self._process.poll() is not None

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        with (ARTIFACTS / f"{self.name}.log").open("a") as sink:
            for raw in self._process.stdout:
                sink.write(raw)
                sink.flush()
                try:
                    line = json.loads(raw)
                except json.JSONDecodeError:
                    line = {"event": "non-json", "text": raw}
                with self._changed:
                    self.raw.append(raw)
                    self.lines.append(line if isinstance(line, dict) else {"event": "non-json", "text": raw})
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[LogLine], bool], timeout: float = 30.0, count: int = 1) -> list[LogLine]:
        """Block until ``count`` log lines satisfy ``predicate``; fail with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matches = [line for line in self.lines if predicate(line)]
                if len(matches) >= count:
                    return matches
                remaining = deadline - time.monotonic()
                exited = self._process is not None and self._process.poll() is not None
                if remaining <= 0 or exited:
                    tail = "".join(self.raw[-30:])
                    state = "exited" if exited else "timed out"
                    raise AssertionError(f"{self.name} {state} waiting for a log line; tail:\n{tail}")
                self._changed.wait(timeout=min(remaining, 0.5))

    def send_signal(self, sig: signal.Signals) -> None:
        assert self._process is not None
        self._process.send_signal(sig)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 40.0) -> int:
        if self._process is None:
            return 0
        if self._process.poll() is None:
            self._process.send_signal(sig)
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._process.stdout is not None:
            self._process.stdout.close()
        return self._process.returncode


def python_module(name: str, module: str, env: dict[str, str]) -> ServiceProcess:
    return ServiceProcess(name, [sys.executable, "-m", module], env)


def python_script(name: str, script: str, args: list[str], env: dict[str, str]) -> ServiceProcess:
    return ServiceProcess(name, [sys.executable, str(ROOT / script), *args], env)


def wait_http(url: str, process: ServiceProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.exited:
            raise AssertionError(f"{process.name} did not answer at {url}; tail:\n{''.join(process.raw[-30:])}")
        time.sleep(0.05)  # polling a port that has no event to wait on


def base_env(extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG", "TZ")}
    return {**env, "LOG_LEVEL": "INFO", **extra}
