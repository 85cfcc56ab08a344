"""End-to-end benchmark: ``conversation.opened`` in, ``sidebar.ready`` out.

By default it starts its own stack on loopback (mock API, store, orchestrator,
executor) against RABBITMQ_URL and MONGODB_URL with a throw-away
MONGODB_DATABASE, so ``make bench`` is one command; ``--no-start`` measures a
stack that is already running (``make run``). It creates a business whose
widgets each make one HTTP call to the mock API, publishes ``--events``
``conversation.opened`` events straight onto the ``sidebar`` exchange with
``--concurrency`` in flight (optionally paced by ``--rate``), and times each one
until the ``sidebar.ready`` carrying its ``trigger_event_id`` arrives.

Prints machine facts and latency percentiles, and writes the same as JSON to
``benchmarks/results/e2e-<timestamp>.json``. The whole run is bounded by
``--timeout``. Executor concurrency is whatever EXECUTOR_CONCURRENCY says.

    .venv/bin/python benchmarks/e2e.py --events 200 --concurrency 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import httpx
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractIncomingMessage
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from shared.contracts.events import CONVERSATION_OPENED, SCHEMA_VERSION
from shared.topology import (
    CONVERSATION_OPENED_KEY,
    CONVERSATION_OPENED_QUEUE,
    EXCHANGE,
    WIDGET_JOBS_QUEUE,
    WIDGET_RESULTS_QUEUE,
    sidebar_ready_pattern,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
LOCAL_LOGS = ROOT / ".local" / "logs"
PYTHON = sys.executable
LOOPBACK = "127.0.0.1"
DEV_ADMIN_KEY = "dev-admin-key-change-me"  # scripts/run.sh's default, for --no-start against `make run`
STARTUP_TIMEOUT_S = 90.0
# Beyond --timeout, time to stop the stack it started (services drain on SIGTERM).
CLEANUP_GRACE_S = 60.0
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_MONGODB_URL = "mongodb://127.0.0.1:27017/"

WIDGET_CODE = """\
import requests

def get_sidebar_data(context):
    response = requests.get(
        "{api_base}/customers",
        params={{"email": context["customer"]["email"]}},
        headers={{"Authorization": "Bearer API_KEY"}},
        timeout=10,
    )
    response.raise_for_status()
    account = response.json()
    return {{
        "title": "Bench {n}",
        "items": [{{
            "title": account["name"],
            "badge": {{"text": account["tier"], "color": "green"}},
            "sections": [{{"title": "Account", "fields": {{"Tier": account["tier"], "LTV": account["ltv"]}}}}],
        }}],
    }}
"""


class BenchmarkError(Exception):
    """The benchmark cannot run; the message says why."""


# --- machine facts and statistics -----------------------------------------------------------


def _read_first(path: str, prefix: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def machine_facts(executor_concurrency: str) -> dict[str, Any]:
    memory_kb = _read_first("/proc/meminfo", "MemTotal")
    return {
        "cpu_model": _read_first("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "memory_gib": round(int(memory_kb.split()[0]) / 1024 / 1024, 1) if memory_kb else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executor_concurrency": executor_concurrency,
    }


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# --- the stack under test ---------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    store_url: str
    mock_api_url: str
    admin_key: str


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


async def start_process(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        # Own session: a Ctrl-C reaches only the benchmark, which stops the stack in order.
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
        process.proc.kill()
        await process.proc.wait()


def stack_env(amqp_url: str, database: str, admin_key: str, ports: dict[str, int]) -> dict[str, str]:
    return {
        **os.environ,
        "RABBITMQ_URL": amqp_url,
        "MONGODB_DATABASE": database,
        "STORE_ADMIN_KEY": admin_key,
        "STORE_HOST": LOOPBACK,
        "STORE_PORT": str(ports["store"]),
        "ORCHESTRATOR_METRICS_PORT": str(ports["orchestrator"]),
        "EXECUTOR_METRICS_PORT": str(ports["executor"]),
        # The sandbox blocks loopback addresses; the benchmark's mock API is allow-listed.
        "EXECUTOR_EGRESS_ALLOW": f"{LOOPBACK}:{ports['mock']}",
        "METRICS_HOST": LOOPBACK,
    }


async def wait_until_serving(processes: list[Process], http_urls: list[str], amqp: AbstractConnection) -> None:
    """Until every URL answers and orchestrator and executor consume; fail fast if a process exits."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            for process in processes:
                if process.proc.returncode is not None:
                    raise BenchmarkError(f"{process.name} exited during start-up; last log lines:\n{process.tail()}")
            if await _all_answer(client, http_urls) and await _consumed(amqp):
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.name} ({p.log}) ---\n{p.tail(10)}" for p in processes)
                raise BenchmarkError(f"the stack did not come up within {STARTUP_TIMEOUT_S:.0f}s:\n{tails}")
            await asyncio.sleep(0.3)


async def _all_answer(client: httpx.AsyncClient, urls: list[str]) -> bool:
    for url in urls:
        try:
            if not (await client.get(url)).is_success:
                return False
        except httpx.HTTPError:
            return False
    return True


async def consumer_count(amqp: AbstractConnection, queue: str) -> int | None:
    """Consumers on a queue, or None if it does not exist (a failed passive declare closes the channel)."""
    try:
        async with amqp.channel() as channel:
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.consumer_count or 0)
    except aio_pika.exceptions.ChannelClosed:
        return None


async def _consumed(amqp: AbstractConnection) -> bool:
    for queue in (CONVERSATION_OPENED_QUEUE, WIDGET_RESULTS_QUEUE, WIDGET_JOBS_QUEUE):
        if not await consumer_count(amqp, queue):
            return False
    return True


def executor_concurrency_from_log(executor: Process) -> str:
    for line in executor.log.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"executor.started"' in line:
            return str(json.loads(line).get("concurrency", "unknown"))
    return os.environ.get("EXECUTOR_CONCURRENCY", "unknown")


def rabbitmqctl(*args: str) -> bool:
    executable = shutil.which("rabbitmqctl")
    if executable is None:
        return False
    result = subprocess.run([executable, *args], capture_output=True, text=True, timeout=60, check=False)
    return result.returncode == 0


@asynccontextmanager
async def isolated_vhost(base_url: str, stamp: str) -> AsyncIterator[str]:
    """A throw-away vhost, so a running `make run` stack neither sees nor steals benchmark events.
    Without a local rabbitmqctl, the configured vhost is used as it is."""
    vhost = f"sidebar-bench-{stamp}-{secrets.token_hex(3)}"
    parts = urlsplit(base_url)
    created = await asyncio.to_thread(rabbitmqctl, "add_vhost", vhost)
    if not created:
        print("note: rabbitmqctl could not add a vhost; using the configured one", flush=True)
        yield base_url
        return
    try:
        await asyncio.to_thread(
            rabbitmqctl, "set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*"
        )
        yield urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, ""))
    finally:
        await asyncio.to_thread(rabbitmqctl, "delete_vhost", vhost)


@asynccontextmanager
async def started_stack(
    amqp: AbstractConnection, amqp_url: str, stamp: str, facts: dict[str, Any]
) -> AsyncIterator[Endpoints]:
    """Mock API, store, orchestrator and executor on free loopback ports, against a fresh database."""
    if await consumer_count(amqp, CONVERSATION_OPENED_QUEUE):
        raise BenchmarkError(
            f"another orchestrator already consumes {CONVERSATION_OPENED_QUEUE} (is `make run` running?); "
            "it would take events for a business its database does not know. Stop it, or pass --no-start."
        )
    ports = {name: free_port() for name in ("mock", "store", "orchestrator", "executor")}
    database = f"bench_{stamp}_{secrets.token_hex(3)}"
    admin_key = os.environ.get("STORE_ADMIN_KEY") or secrets.token_urlsafe(24)
    env = stack_env(amqp_url, database, admin_key, ports)
    log_dir = LOCAL_LOGS / f"bench-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    commands = {
        "mock-api": [PYTHON, "demo/mock_api.py", "--port", str(ports["mock"]), "--quiet"],
        "store": [PYTHON, "-m", "store"],
        "orchestrator": [PYTHON, "-m", "orchestrator"],
        "executor": [PYTHON, "-m", "executor"],
    }
    processes: list[Process] = []
    try:
        for name, args in commands.items():
            processes.append(await start_process(name, args, env, log_dir))
        endpoints = Endpoints(f"http://{LOOPBACK}:{ports['store']}", f"http://{LOOPBACK}:{ports['mock']}", admin_key)
        await wait_until_serving(
            processes, [f"{endpoints.mock_api_url}/healthz", f"{endpoints.store_url}/healthz"], amqp
        )
        facts["executor_concurrency"] = executor_concurrency_from_log(processes[-1])
        print(f"stack up: database {database}, logs in {log_dir.relative_to(ROOT)}", flush=True)
        yield endpoints
    finally:
        for process in reversed(processes):
            await stop_process(process)
        await asyncio.to_thread(drop_database, env.get("MONGODB_URL", DEFAULT_MONGODB_URL), database)


def drop_database(url: str, database: str) -> None:
    try:
        client: MongoClient[dict[str, Any]]
        with MongoClient(url, serverSelectionTimeoutMS=5000) as client:
            client.drop_database(database)
    except PyMongoError as exc:
        print(f"e2e: warning: could not drop database {database}: {exc}", file=sys.stderr)


@asynccontextmanager
async def attached_stack(amqp: AbstractConnection, args: argparse.Namespace) -> AsyncIterator[Endpoints]:
    for queue in (CONVERSATION_OPENED_QUEUE, WIDGET_JOBS_QUEUE):
        if not await consumer_count(amqp, queue):
            raise BenchmarkError(f"nothing consumes {queue}; start the stack (`make run`) or drop --no-start")
    yield Endpoints(args.store.rstrip("/"), args.mock_api.rstrip("/"), args.admin_key or DEV_ADMIN_KEY)


# --- the benchmark business -------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    business_id: str
    conversation_id: str
    widget_ids: list[str]


async def _call(client: httpx.AsyncClient, method: str, path: str, key: str, body: Any = None) -> httpx.Response:
    response = await client.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})
    if not response.is_success:
        raise BenchmarkError(f"{method} {path} -> {response.status_code}: {response.text[:300]}")
    return response


async def create_target(
    client: httpx.AsyncClient, endpoints: Endpoints, stamp: str, widgets: int
) -> tuple[Target, str]:
    business_id = f"bench-{stamp}-{secrets.token_hex(3)}"
    created = await _call(
        client, "POST", "/v1/businesses", endpoints.admin_key, {"business_id": business_id, "name": "E2E benchmark"}
    )
    key = str(created.json()["api_key"])
    base = f"/v1/businesses/{business_id}"
    await _call(client, "PUT", f"{base}/customers/bench-customer", key, {"email": "jane@example.com"})
    await _call(client, "PUT", f"{base}/conversations/conv-bench", key, {"customer_id": "bench-customer"})
    widget_ids = [f"bench-{n}" for n in range(1, widgets + 1)]
    for n, widget_id in enumerate(widget_ids, start=1):
        code = WIDGET_CODE.format(api_base=endpoints.mock_api_url, n=n)
        body = {"widget_id": widget_id, "name": f"Bench {n}", "code": code, "position": n, "timeout_s": 10}
        await _call(client, "POST", f"{base}/widgets", key, body)
    return Target(business_id, "conv-bench", widget_ids), key


async def remove_widgets(client: httpx.AsyncClient, target: Target, key: str) -> None:
    """The store has no business deletion; removing the widgets leaves nothing that runs."""
    for widget_id in target.widget_ids:
        await _call(client, "DELETE", f"/v1/businesses/{target.business_id}/widgets/{widget_id}", key)


# --- load -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    at: float
    sidebar: dict[str, Any]


@dataclass
class Sidebars:
    """The ``sidebar.ready`` subscription: hands each sidebar to the event awaiting its ``trigger_event_id``."""

    waiting: dict[str, asyncio.Future[Arrival]] = field(default_factory=dict)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        arrived = time.perf_counter()
        body = json.loads(message.body)
        future = self.waiting.get(body.get("trigger_event_id", ""))
        if future is not None and not future.done():
            future.set_result(Arrival(arrived, body))

    def expect(self, event_id: str) -> asyncio.Future[Arrival]:
        future: asyncio.Future[Arrival] = asyncio.get_running_loop().create_future()
        self.waiting[event_id] = future
        return future

    def forget(self, event_id: str) -> None:
        del self.waiting[event_id]


async def subscribe(channel: AbstractChannel, target: Target) -> Sidebars:
    sidebars = Sidebars()
    exchange = await channel.get_exchange(EXCHANGE)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key=sidebar_ready_pattern(target.business_id, "#"))
    await queue.consume(sidebars.on_message, no_ack=True)
    return sidebars


@dataclass
class Tracker:
    """What one load run measured."""

    expected_widgets: int
    latencies_ms: list[float] = field(default_factory=list)
    all_ok: int = 0
    publish_errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    first_publish: float | None = None
    last_arrival: float | None = None

    def published(self, at: float) -> None:
        self.first_publish = min(self.first_publish or at, at)

    def record(self, published: float, arrival: Arrival) -> None:
        self.latencies_ms.append((arrival.at - published) * 1000)
        self.last_arrival = max(self.last_arrival or arrival.at, arrival.at)
        widgets = arrival.sidebar["widgets"]
        self.statuses.update(w["status"] for w in widgets)
        if len(widgets) == self.expected_widgets and all(w["status"] == "ok" for w in widgets):
            self.all_ok += 1


@dataclass(frozen=True)
class Load:
    exchange: AbstractExchange
    sidebars: Sidebars
    target: Target
    deadline: float


def opened_event(target: Target) -> tuple[str, aio_pika.Message]:
    event_id = uuid.uuid4().hex
    body = {
        "event_id": event_id,
        "business_id": target.business_id,
        "conversation_id": target.conversation_id,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    message = aio_pika.Message(
        json.dumps(body).encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=event_id,
        type=CONVERSATION_OPENED,
        headers={"schema_version": SCHEMA_VERSION},
    )
    return event_id, message


async def one_event(load: Load, tracker: Tracker) -> None:
    """Publish one event (confirmed) and wait, until the deadline, for its sidebar."""
    event_id, message = opened_event(load.target)
    arrival = load.sidebars.expect(event_id)
    published = time.perf_counter()
    tracker.published(published)
    try:
        await load.exchange.publish(message, routing_key=CONVERSATION_OPENED_KEY, mandatory=True)
        tracker.record(published, await asyncio.wait_for(arrival, max(0.0, load.deadline - time.monotonic())))
    except TimeoutError:
        pass
    except (aio_pika.exceptions.AMQPError, ConnectionError) as exc:
        tracker.publish_errors[f"{type(exc).__name__}: {exc}"] += 1
    finally:
        load.sidebars.forget(event_id)


async def run_load(load: Load, tracker: Tracker, events: int, concurrency: int, rate: float) -> None:
    """Publish ``events`` with at most ``concurrency`` awaiting their sidebar; ``rate`` > 0 paces the starts."""
    slots = asyncio.Semaphore(concurrency)
    started = time.monotonic()

    async def guarded() -> None:
        try:
            await one_event(load, tracker)
        finally:
            slots.release()

    async with asyncio.TaskGroup() as tasks:
        for i in range(events):
            if rate > 0:
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            await slots.acquire()
            if time.monotonic() >= load.deadline:
                slots.release()
                break
            tasks.create_task(guarded())


# --- report -----------------------------------------------------------------------------------


def summarize(tracker: Tracker, args: argparse.Namespace, facts: dict[str, Any], mode: str) -> dict[str, Any]:
    latencies = sorted(tracker.latencies_ms)
    completed = len(latencies)
    elapsed = (tracker.last_arrival or 0.0) - (tracker.first_publish or 0.0)
    return {
        "benchmark": "e2e",
        "finished_at": datetime.now(UTC).isoformat(),
        "machine": facts,
        "config": {
            "mode": mode,
            "events": args.events,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "rate_per_s": args.rate or None,
            "widgets": args.widgets,
            "timeout_s": args.timeout,
        },
        "results": {
            "completed": completed,
            "missing": args.events - completed,
            "all_widgets_ok": tracker.all_ok,
            "publish_errors": dict(tracker.publish_errors),
            "widget_statuses": dict(tracker.statuses),
            "latency_ms": {
                name: round(percentile(latencies, p), 1) if latencies else None
                for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
            },
            "duration_s": round(elapsed, 3),
            "sidebars_per_s": round(completed / elapsed, 1) if elapsed > 0 else None,
        },
    }


def print_report(report: dict[str, Any]) -> None:
    machine, config, results = report["machine"], report["config"], report["results"]
    latency = results["latency_ms"]
    print(f"machine:     {machine['cpu_model']}, {machine['cpu_count']} cores, {machine['memory_gib']} GiB")
    print(f"python:      {machine['python']} on {machine['platform']}")
    print(f"executor:    concurrency {machine['executor_concurrency']}")
    print(
        f"load:        {config['events']} events, {config['widgets']} widgets each, concurrency {config['concurrency']}"
        + (f", rate {config['rate_per_s']}/s" if config["rate_per_s"] else ", as fast as possible")
    )
    print(
        f"completed:   {results['completed']} (missing {results['missing']}), "
        f"all widgets ok: {results['all_widgets_ok']}, publish errors: {sum(results['publish_errors'].values())}"
    )
    print(f"latency ms:  p50 {latency['p50']}  p90 {latency['p90']}  p99 {latency['p99']}  max {latency['max']}")
    print(f"throughput:  {results['sidebars_per_s']} sidebars/s over {results['duration_s']} s")


def write_report(report: dict[str, Any], stamp: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"e2e-{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


# --- main -------------------------------------------------------------------------------------


async def benchmark(args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    deadline = time.monotonic() + args.timeout
    facts = machine_facts(os.environ.get("EXECUTOR_CONCURRENCY", "unknown (EXECUTOR_CONCURRENCY not set)"))
    async with AsyncExitStack() as stack:
        amqp_url = os.environ.get("RABBITMQ_URL", DEFAULT_RABBITMQ_URL)
        if args.start:
            amqp_url = await stack.enter_async_context(isolated_vhost(amqp_url, stamp))
        amqp = await aio_pika.connect(amqp_url, timeout=30)
        stack.push_async_callback(amqp.close)
        if args.start:
            endpoints = await stack.enter_async_context(started_stack(amqp, amqp_url, stamp, facts))
        else:
            endpoints = await stack.enter_async_context(attached_stack(amqp, args))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=endpoints.store_url, timeout=30.0))
        target, key = await create_target(client, endpoints, stamp, args.widgets)
        if not args.start:
            stack.push_async_callback(remove_widgets, client, target, key)

        sidebars = await subscribe(await amqp.channel(), target)
        exchange = await (await amqp.channel(publisher_confirms=True)).get_exchange(EXCHANGE)
        load = Load(exchange, sidebars, target, deadline)
        if args.warmup:
            await run_load(load, Tracker(args.widgets), args.warmup, args.concurrency, rate=0.0)
        tracker = Tracker(args.widgets)
        await run_load(load, tracker, args.events, args.concurrency, args.rate)
        return summarize(tracker, args, facts, "started" if args.start else "attached")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200, help="measured events (default 200)")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured events first (default 5)")
    parser.add_argument("--concurrency", type=int, default=10, help="events awaiting their sidebar at once")
    parser.add_argument("--rate", type=float, default=0.0, help="events per second; 0 = as fast as possible")
    parser.add_argument("--widgets", type=int, default=5, help="widgets per sidebar, one HTTP call each")
    parser.add_argument("--timeout", type=float, default=300.0, help="overall bound in seconds (default 300)")
    parser.add_argument(
        "--start",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start mock API, store, orchestrator and executor (default); --no-start uses a running stack",
    )
    parser.add_argument("--store", default="http://127.0.0.1:8000", help="with --no-start: the store URL")
    parser.add_argument("--mock-api", default="http://127.0.0.1:8900", help="with --no-start: the mock API URL")
    parser.add_argument(
        "--admin-key", default=os.environ.get("STORE_ADMIN_KEY"), help="with --no-start: store admin key"
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.concurrency < 1 or args.widgets < 1 or args.warmup < 0:
        parser.error("--events, --concurrency and --widgets must be at least 1, --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        report = asyncio.run(asyncio.wait_for(benchmark(args, stamp), args.timeout + CLEANUP_GRACE_S))
    except BenchmarkError as exc:
        print(f"e2e: error: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"e2e: error: gave up after {args.timeout + CLEANUP_GRACE_S:.0f}s", file=sys.stderr)
        return 1
    print_report(report)
    print(f"results:     {write_report(report, stamp).relative_to(ROOT)}")
    return 0 if report["results"]["missing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
