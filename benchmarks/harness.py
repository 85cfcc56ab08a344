"""What every benchmark here starts, stops and writes: processes on loopback ports, a
throw-away RabbitMQ vhost and MongoDB database, machine facts and the results file.

Everything a benchmark creates it removes on the way out, whatever happened.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from aio_pika.exceptions import AMQPError
from pymongo import MongoClient
from pymongo.errors import PyMongoError

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
LOCAL_LOGS = ROOT / ".local" / "logs"
PYTHON = sys.executable
LOOPBACK = "127.0.0.1"
# Below the default ephemeral range (32768-60999), above every port the services and the chaos
# suite use (5672, 57xx, 25672, 257xx, 27017, 271xx).
_FIRST_SERVICE_PORT = 30_000
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_MONGODB_URL = "mongodb://127.0.0.1:27017/"

T = TypeVar("T")


class BenchmarkError(Exception):
    """The benchmark cannot run; the message says why."""


def _read_first(path: str, prefix: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def machine_facts() -> dict[str, Any]:
    memory_kb = _read_first("/proc/meminfo", "MemTotal")
    return {
        "cpu_model": _read_first("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "memory_gib": round(int(memory_kb.split()[0]) / 1024 / 1024, 1) if memory_kb else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def free_port() -> int:
    """A free loopback port for a service to bind, below the kernel's ephemeral range: a port
    that bind(0) hands out may be taken by the next outgoing connection before the service
    binds it (CI once lost a store to that)."""
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = range(_FIRST_SERVICE_PORT, max(_FIRST_SERVICE_PORT + 1, ephemeral_low))
    return free_port_in((secrets.choice(ports) for _ in range(200)), f"{ports.start}-{ports.stop - 1}")


def free_port_in(ports: Iterable[int], described: str) -> int:
    """The first of ``ports`` that loopback can bind now."""
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise BenchmarkError(f"no free port in {described}")


@dataclass
class Process:
    name: str
    proc: asyncio.subprocess.Process
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


async def start_process(name: str, args: Sequence[str], env: dict[str, str], log_dir: Path) -> Process:
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        # Own session: a Ctrl-C reaches only the benchmark, which stops what it started in order.
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    return Process(name, proc, log)


async def stop_process(process: Process, grace_s: float = 40.0) -> None:
    if process.proc.returncode is not None:
        return
    process.proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.proc.wait(), grace_s)
    except TimeoutError:
        # The whole session: a prefork worker's children go with it.
        os.killpg(process.proc.pid, signal.SIGKILL)
        await process.proc.wait()


async def wait_http(urls: Sequence[str], processes: Sequence[Process], timeout_s: float) -> None:
    """Until every URL answers 2xx; fail fast if one of ``processes`` exits."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            for process in processes:
                if process.proc.returncode is not None:
                    raise BenchmarkError(f"{process.name} exited during start-up; last log lines:\n{process.tail()}")
            if await _all_answer(client, urls):
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.name} ({p.log}) ---\n{p.tail(10)}" for p in processes)
                raise BenchmarkError(f"not serving within {timeout_s:.0f}s: {', '.join(urls)}\n{tails}")
            await asyncio.sleep(0.2)


async def _all_answer(client: httpx.AsyncClient, urls: Sequence[str]) -> bool:
    for url in urls:
        try:
            if not (await client.get(url)).is_success:
                return False
        except httpx.HTTPError:
            return False
    return True


def run_bounded(main: Callable[[], Coroutine[Any, Any, T]], bound_s: float) -> T:
    """``asyncio.run`` with a time bound, where SIGTERM and SIGINT cancel the run, so that its
    clean-up (processes, vhost, database) still happens."""

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
        return await asyncio.wait_for(main(), bound_s)

    return asyncio.run(guarded())


def run_report(
    name: str, main: Callable[[], Coroutine[Any, Any, dict[str, Any]]], bound_s: float
) -> dict[str, Any] | int:
    """``run_bounded`` for a benchmark that returns its report: the report, or else the exit
    code after a one-line message (1: it failed or gave up, 130: it was interrupted)."""
    try:
        return run_bounded(main, bound_s)
    except BenchmarkError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:  # before OSError, of which it is one
        print(f"{name}: error: gave up after {bound_s:g}s", file=sys.stderr)
        return 1
    except (AMQPError, PyMongoError, OSError) as exc:  # the broker or the database out of reach, say
        print(f"{name}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        print(f"{name}: interrupted; what it started is stopped", file=sys.stderr)
        return 130


def rabbitmqctl_output(*args: str, node: str | None = None, timeout_s: float = 120) -> str:
    """What ``rabbitmqctl [-n node] args`` printed; BenchmarkError if it is missing or fails."""
    executable = shutil.which("rabbitmqctl") or (
        "/usr/sbin/rabbitmqctl" if os.path.exists("/usr/sbin/rabbitmqctl") else None
    )
    if executable is None:
        raise BenchmarkError("rabbitmqctl not found (is RabbitMQ installed here?)")
    command = [executable, *(["-n", node] if node else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if result.returncode != 0:
        raise BenchmarkError(f"{' '.join(command)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def rabbitmqctl(*args: str, node: str | None = None) -> bool:
    try:
        rabbitmqctl_output(*args, node=node, timeout_s=60)
    except BenchmarkError:
        return False
    return True


@asynccontextmanager
async def isolated_vhost(base_url: str, label: str, node: str | None = None) -> AsyncIterator[str]:
    """A throw-away vhost (on ``node``, else the default node), so nothing else running on the
    broker sees or steals benchmark messages."""
    vhost = f"sidebar-bench-{label}-{secrets.token_hex(3)}"
    parts = urlsplit(base_url)
    if not await asyncio.to_thread(rabbitmqctl, "add_vhost", vhost, node=node):
        raise BenchmarkError("rabbitmqctl could not add a vhost (is RabbitMQ local, and rabbitmqctl on PATH?)")
    try:
        await asyncio.to_thread(
            rabbitmqctl, "set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*", node=node
        )
        yield urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, ""))
    finally:
        await asyncio.to_thread(rabbitmqctl, "delete_vhost", vhost, node=node)


def drop_database(url: str, database: str) -> None:
    try:
        client: MongoClient[dict[str, Any]]
        with MongoClient(url, serverSelectionTimeoutMS=5000) as client:
            client.drop_database(database)
    except PyMongoError as exc:
        print(f"warning: could not drop database {database}: {exc}", file=sys.stderr)


def write_report(report: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
