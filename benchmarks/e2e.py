"""End-to-end benchmark of the product: ``conversation.opened`` in, ``sidebar.widget`` cards
and ``sidebar.ready`` out.

By default it starts its own stack on loopback (the workload's upstream, store,
orchestrator, executor) against RABBITMQ_URL and MONGODB_URL in a throw-away vhost and
MONGODB_DATABASE, so ``make bench`` is one command; ``--no-start`` measures a running stack.
It talks to the system only through its external contracts: the store's HTTP API to create
businesses, widgets and conversations; ``conversation.opened`` published on the ``sidebar``
exchange; ``sidebar.ready.*`` and ``sidebar.widget.*`` received from it; the metrics endpoints.

Scenarios (``--scenarios``, comma-separated):

- ``throughput``: ``--events`` events, ``--concurrency`` awaiting their sidebar at once, on a
  business whose ``--widgets`` widgets each make one HTTP GET (``benchmarks/workload.py``).
  The client waits for ``sidebar.ready`` only, as the chord's does. Reads
  ``orchestrator_db_commands_total`` and ``store_db_commands_total`` before and after and
  reports database commands per sidebar, and the CPU each process used per sidebar
  (``benchmarks/cpu.py``).
- ``idle``: the demo's four example widgets, ``--idle-events`` one at a time, each
  ``IDLE_GAP_S`` after the previous sidebar so that it meets a quiet stack; sidebar
  arrival minus the slowest widget's ``duration_ms``, first card minus the fastest one's.
- ``open-loop``: each widget's endpoint answers after 50-200 ms, events open at
  ``--open-rate`` per second for ``--open-duration`` s; time to the first card and to the
  complete sidebar.

Writes JSON to ``--output`` (default ``benchmarks/results/e2e-<timestamp>.json``). The whole
run is bounded by ``--timeout``.

    .venv/bin/python benchmarks/e2e.py --events 200 --concurrency 10
    .venv/bin/python benchmarks/e2e.py --scenarios throughput,idle,open-loop --open-rate 20 --open-duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aio_pika
import httpx
from aio_pika.abc import AbstractExchange
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.cpu import CpuMeter, per_sidebar_ms
from benchmarks.cpu import describe as describe_cpu
from benchmarks.harness import (
    DEFAULT_MONGODB_URL,
    DEFAULT_RABBITMQ_URL,
    LOCAL_LOGS,
    LOOPBACK,
    PYTHON,
    RESULTS_DIR,
    BenchmarkError,
    Process,
    drop_database,
    free_port,
    isolated_vhost,
    machine_facts,
    relative,
    run_report,
    start_process,
    stop_process,
    wait_http,
    write_report,
)
from benchmarks.load import (
    Outcome,
    Submit,
    Watch,
    closed_loop,
    open_loop,
    spaced,
    until_serving,
    watch_sidebars,
)
from benchmarks.workload import (
    REALISTIC_FIRST,
    THROUGHPUT_FIRST,
    BenchWidget,
    bench_widgets,
    realistic_delays,
    stats_ms,
)
from demo.examples import EXAMPLES, load_example
from shared.contracts.events import CONVERSATION_OPENED, SCHEMA_VERSION
from shared.topology import CONVERSATION_OPENED_KEY, EXCHANGE

DEV_ADMIN_KEY = "dev-admin-key-change-me"  # scripts/run.sh's default, for --no-start against `make run`
STARTUP_TIMEOUT_S = 90.0
CLEANUP_GRACE_S = 60.0
SCENARIOS = ("throughput", "idle", "open-loop")
# Past the previous run's record (two updates) and acks: the next event meets an idle stack.
IDLE_GAP_S = 0.1
SANDBOX = "sandbox (zygote, widget processes)"
DB_COMMAND_METRICS = {"orchestrator": "orchestrator_db_commands_total", "store": "store_db_commands_total"}


# --- the stack under test ---------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    store_url: str
    upstream_url: str
    admin_key: str
    metrics: dict[str, str]  # service -> its /metrics URL
    pids: dict[str, int] = field(default_factory=dict)  # service -> pid, for a stack started here


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
        # The sandbox blocks loopback addresses; the benchmark's upstream is allow-listed.
        "EXECUTOR_EGRESS_ALLOW": f"{LOOPBACK}:{ports['upstream']}",
        "METRICS_HOST": LOOPBACK,
    }


def upstream_command(port: int, delays: dict[str, float]) -> list[str]:
    args = [PYTHON, "benchmarks/workload.py", "upstream", "--host", LOOPBACK, "--port", str(port)]
    for prefix, seconds in delays.items():
        args += ["--delay", f"{prefix}={seconds}"]
    return args


def executor_concurrency_from_log(executor: Process) -> str:
    for line in executor.log.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"executor.started"' in line:
            return str(json.loads(line).get("concurrency", "unknown"))
    return os.environ.get("EXECUTOR_CONCURRENCY", "unknown")


@asynccontextmanager
async def started_stack(
    amqp_url: str, stamp: str, args: argparse.Namespace, facts: dict[str, Any]
) -> AsyncIterator[Endpoints]:
    """Upstream, store, orchestrator and executor on free loopback ports, against a fresh database."""
    ports = {name: free_port() for name in ("upstream", "store", "orchestrator", "executor")}
    database = f"bench_{stamp}_{secrets.token_hex(3)}"
    admin_key = os.environ.get("STORE_ADMIN_KEY") or secrets.token_urlsafe(24)
    env = stack_env(amqp_url, database, admin_key, ports)
    log_dir = LOCAL_LOGS / f"bench-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    commands = {
        "upstream": upstream_command(ports["upstream"], realistic_delays(realistic_widgets(args.widgets))),
        "store": [PYTHON, "-m", "store"],
        "orchestrator": [PYTHON, "-m", "orchestrator"],
        "executor": [PYTHON, "-m", "executor"],
    }
    processes: list[Process] = []
    try:
        for name, command in commands.items():
            processes.append(await start_process(name, command, env, log_dir))
        endpoints = Endpoints(
            f"http://{LOOPBACK}:{ports['store']}",
            f"http://{LOOPBACK}:{ports['upstream']}",
            admin_key,
            {
                "orchestrator": f"http://{LOOPBACK}:{ports['orchestrator']}/metrics",
                "store": f"http://{LOOPBACK}:{ports['store']}/metrics",
            },
            {process.name: process.proc.pid for process in processes},
        )
        await wait_http(
            [f"{endpoints.upstream_url}/healthz", f"{endpoints.store_url}/healthz"], processes, STARTUP_TIMEOUT_S
        )
        print(f"stack up: database {database}, logs in {relative(log_dir)}", flush=True)
        yield endpoints
    finally:
        if processes:
            facts["executor_concurrency"] = executor_concurrency_from_log(processes[-1])
        for process in reversed(processes):
            await stop_process(process)
        await asyncio.to_thread(drop_database, env.get("MONGODB_URL", DEFAULT_MONGODB_URL), database)


# --- businesses -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    business_id: str
    conversation_id: str
    widget_ids: list[str]
    key: str


async def _call(client: httpx.AsyncClient, method: str, path: str, key: str, body: Any = None) -> httpx.Response:
    response = await client.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})
    if not response.is_success:
        raise BenchmarkError(f"{method} {path} -> {response.status_code}: {response.text[:300]}")
    return response


async def create_target(
    client: httpx.AsyncClient, admin_key: str, label: str, widgets: Sequence[tuple[str, str, str, int]]
) -> Target:
    """A business with one customer, one conversation and ``widgets`` (id, name, code, position)."""
    business_id = f"bench-{label}-{secrets.token_hex(3)}"
    created = await _call(
        client, "POST", "/v1/businesses", admin_key, {"business_id": business_id, "name": "E2E benchmark"}
    )
    key = str(created.json()["api_key"])
    base = f"/v1/businesses/{business_id}"
    await _call(client, "PUT", f"{base}/customers/bench-customer", key, {"email": "jane@example.com"})
    await _call(client, "PUT", f"{base}/conversations/conv-bench", key, {"customer_id": "bench-customer"})
    for widget_id, name, code, position in widgets:
        body = {"widget_id": widget_id, "name": name, "code": code, "position": position, "timeout_s": 10}
        await _call(client, "POST", f"{base}/widgets", key, body)
    return Target(business_id, "conv-bench", [w[0] for w in widgets], key)


def bench_specs(widgets: Sequence[BenchWidget], api_base: str) -> list[tuple[str, str, str, int]]:
    return [(w.widget_id, w.name, w.code(api_base), w.position) for w in widgets]


def realistic_widgets(count: int) -> list[BenchWidget]:
    return bench_widgets(count, REALISTIC_FIRST)


async def remove_widgets(client: httpx.AsyncClient, target: Target) -> None:
    """The store has no business deletion; removing the widgets leaves nothing that runs."""
    for widget_id in target.widget_ids:
        await _call(client, "DELETE", f"/v1/businesses/{target.business_id}/widgets/{widget_id}", target.key)


# --- events and metrics -----------------------------------------------------------------------


def opened_message(target: Target, event_id: str) -> aio_pika.Message:
    body = {
        "event_id": event_id,
        "business_id": target.business_id,
        "conversation_id": target.conversation_id,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    return aio_pika.Message(
        json.dumps(body).encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=event_id,
        type=CONVERSATION_OPENED,
        headers={"schema_version": SCHEMA_VERSION},
    )


def publisher(exchange: AbstractExchange, target: Target) -> Submit:
    async def submit(event_id: str) -> None:
        await exchange.publish(opened_message(target, event_id), routing_key=CONVERSATION_OPENED_KEY, mandatory=True)

    return submit


async def db_commands(client: httpx.AsyncClient, url: str, sample: str) -> dict[str, float] | None:
    """``sample``'s value per ``command`` label, or None when the endpoint or the metric is absent."""
    try:
        response = await client.get(url)
    except httpx.HTTPError:
        return None
    if not response.is_success:
        return None
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            if s.name == sample:
                command = s.labels.get("command", "")
                counts[command] = counts.get(command, 0.0) + s.value
    return counts or None


async def read_db_commands(endpoints: Endpoints) -> dict[str, dict[str, float] | None]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        return {
            service: await db_commands(client, endpoints.metrics[service], sample)
            for service, sample in DB_COMMAND_METRICS.items()
        }


def per_sidebar(
    before: dict[str, dict[str, float] | None], after: dict[str, dict[str, float] | None], sidebars: int
) -> dict[str, dict[str, float] | None]:
    """Commands per sidebar by service and command, with ``total``; None where the metric is absent."""
    result: dict[str, dict[str, float] | None] = {}
    for service in DB_COMMAND_METRICS:
        old, new = before.get(service), after.get(service)
        if new is None or sidebars == 0:
            result[service] = None
            continue
        old = old or {}
        deltas = {command: (value - old.get(command, 0.0)) / sidebars for command, value in new.items()}
        per = {command: round(value, 2) for command, value in sorted(deltas.items()) if value > 0}
        per["total"] = round(sum(deltas.values()), 2)
        result[service] = per
    return result


# --- scenarios --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    client: httpx.AsyncClient
    endpoints: Endpoints
    channel: aio_pika.abc.AbstractChannel
    exchange: AbstractExchange
    args: argparse.Namespace
    deadline: float
    cleanup: AsyncExitStack

    async def target(
        self, label: str, widgets: Sequence[tuple[str, str, str, int]], *, cards: bool = True
    ) -> tuple[Target, Watch, Submit]:
        target = await create_target(self.client, self.endpoints.admin_key, label, widgets)
        if not self.args.start:
            self.cleanup.push_async_callback(remove_widgets, self.client, target)
        watch = await watch_sidebars(self.channel, self.exchange, target.business_id, cards=cards)
        submit = publisher(self.exchange, target)
        await until_serving(watch, submit, min(self.deadline, time.monotonic() + STARTUP_TIMEOUT_S))
        return target, watch, submit


def cpu_meter(endpoints: Endpoints) -> CpuMeter | None:
    """The stack's CPU by service, the sandbox apart from the executor; None for a stack
    this run did not start (its processes are not known)."""
    if not endpoints.pids:
        return None
    return CpuMeter(
        {name: [pid] for name, pid in endpoints.pids.items()},
        carved={SANDBOX: ("executor", "executor.sandbox.zygote")},
    )


async def throughput(bench: Bench) -> dict[str, Any]:
    args = bench.args
    widgets = bench_widgets(args.widgets, THROUGHPUT_FIRST)
    _, watch, submit = await bench.target("throughput", bench_specs(widgets, bench.endpoints.upstream_url), cards=False)
    if args.warmup:
        await closed_loop(watch, submit, args.warmup, args.concurrency, bench.deadline)
    meter = cpu_meter(bench.endpoints)
    before, cpu_before = await read_db_commands(bench.endpoints), meter.snapshot() if meter else None
    outcome = await closed_loop(watch, submit, args.events, args.concurrency, bench.deadline)
    # Sidebars are published after their writes, so the counters are complete once they arrive.
    after, cpu_after = await read_db_commands(bench.endpoints), meter.snapshot() if meter else None
    summary = outcome.summary(len(widgets))
    summary["db_commands_per_sidebar"] = per_sidebar(before, after, len(outcome.timings))
    summary["cpu_ms_per_sidebar"] = per_sidebar_ms(cpu_before, cpu_after, len(outcome.timings))
    summary["config"] = {"events": args.events, "concurrency": args.concurrency, "widgets": len(widgets)}
    return summary


def idle_summary(outcome: Outcome) -> dict[str, Any]:
    """Arrival over the slowest widget's ``duration_ms``, and first card over the fastest's."""
    over_slowest, over_fastest = [], []
    for timing in outcome.timings:
        durations = timing.durations_ms()
        if not durations:
            continue
        over_slowest.append(timing.complete_ms() - max(durations))
        first = timing.first_card_ms()
        if first is not None:
            over_fastest.append(first - min(durations))
    summary = outcome.summary(len(EXAMPLES))
    summary["ready_over_slowest_ms"] = stats_ms(over_slowest)
    summary["first_card_over_fastest_ms"] = stats_ms(over_fastest) if over_fastest else None
    summary["widget_duration_ms"] = stats_ms([d for t in outcome.timings for d in t.durations_ms()])
    return summary


async def idle(bench: Bench) -> dict[str, Any]:
    api = bench.endpoints.upstream_url
    specs = [(e.widget_id, e.name, load_example(e.widget_id, api), e.position) for e in EXAMPLES]
    _, watch, submit = await bench.target("idle", specs)
    await closed_loop(watch, submit, 2, 1, bench.deadline)
    summary = idle_summary(await spaced(watch, submit, bench.args.idle_events, IDLE_GAP_S, bench.deadline))
    summary["config"] = {
        "events": bench.args.idle_events,
        "gap_s": IDLE_GAP_S,
        "widgets": [e.widget_id for e in EXAMPLES],
    }
    return summary


async def realistic(bench: Bench) -> dict[str, Any]:
    args = bench.args
    widgets = realistic_widgets(args.widgets)
    delays = realistic_delays(widgets)
    _, watch, submit = await bench.target("open-loop", bench_specs(widgets, bench.endpoints.upstream_url))
    await closed_loop(watch, submit, 2, 1, bench.deadline)
    outcome = await open_loop(watch, submit, args.open_rate, args.open_duration, bench.deadline, args.open_drain)
    return realistic_summary(outcome, len(widgets), delays, args)


def realistic_summary(
    outcome: Outcome, widgets: int, delays: dict[str, float], args: argparse.Namespace
) -> dict[str, Any]:
    summary = outcome.summary(widgets)
    summary["floor_ms"] = {"first_card": min(delays.values()) * 1000, "complete": max(delays.values()) * 1000}
    summary["config"] = {
        "rate_per_s": args.open_rate,
        "duration_s": args.open_duration,
        "drain_s": args.open_drain,
        "widget_delays_ms": {k: round(v * 1000, 1) for k, v in delays.items()},
    }
    return summary


# --- main -------------------------------------------------------------------------------------


@asynccontextmanager
async def attached_stack(args: argparse.Namespace) -> AsyncIterator[Endpoints]:
    yield Endpoints(
        args.store.rstrip("/"),
        args.upstream.rstrip("/"),
        args.admin_key or DEV_ADMIN_KEY,
        {"orchestrator": args.orchestrator_metrics, "store": args.store.rstrip("/") + "/metrics"},
    )


async def benchmark(args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    deadline = time.monotonic() + args.timeout
    facts: dict[str, Any] = {
        **machine_facts(),
        "executor_concurrency": os.environ.get("EXECUTOR_CONCURRENCY", "default"),
    }
    report: dict[str, Any] = {
        "benchmark": "e2e",
        "system": "product",
        "machine": facts,
        "config": {k: v for k, v in vars(args).items() if k not in ("admin_key", "output")},
        "scenarios": {},
    }
    async with AsyncExitStack() as stack:
        amqp_url = os.environ.get("RABBITMQ_URL", DEFAULT_RABBITMQ_URL)
        if args.start:
            amqp_url = await stack.enter_async_context(isolated_vhost(amqp_url, f"e2e-{stamp}"))
            endpoints = await stack.enter_async_context(started_stack(amqp_url, stamp, args, facts))
        else:
            endpoints = await stack.enter_async_context(attached_stack(args))
        amqp = await aio_pika.connect(amqp_url, timeout=30)
        stack.push_async_callback(amqp.close)
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=endpoints.store_url, timeout=30.0))
        channel = await amqp.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        bench = Bench(client, endpoints, channel, exchange, args, deadline, stack)
        for name, run in (("throughput", throughput), ("idle", idle), ("open-loop", realistic)):
            if name in args.scenarios:
                print(f"e2e: {name} ...", flush=True)
                report["scenarios"][name] = await run(bench)
    report["finished_at"] = datetime.now(UTC).isoformat()
    return report


def print_report(report: dict[str, Any]) -> None:
    machine, scenarios = report["machine"], report["scenarios"]
    print(f"machine:     {machine['cpu_model']}, {machine['cpu_count']} cores, {machine['memory_gib']} GiB")
    print(f"executor:    concurrency {machine['executor_concurrency']}")
    for name, result in scenarios.items():
        latency = result["latency_ms"]
        print(
            f"{name + ':':<12} completed {result['completed']}/{result['submitted']}, "
            f"all ok {result['all_widgets_ok']}, p50 {latency['p50']} p99 {latency['p99']} ms, "
            f"{result['sidebars_per_s']} sidebars/s"
        )
        if "db_commands_per_sidebar" in result:
            print(f"             db commands per sidebar: {result['db_commands_per_sidebar']}")
        if "cpu_ms_per_sidebar" in result:
            print(f"             CPU per sidebar: {describe_cpu(result['cpu_ms_per_sidebar'])}")
        if "ready_over_slowest_ms" in result:
            print(
                f"             ready - slowest widget p50 {result['ready_over_slowest_ms']['p50']} ms, "
                f"first card - fastest p50 {(result['first_card_over_fastest_ms'] or {}).get('p50')} ms"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenarios", default="throughput", help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--events", type=int, default=200, help="throughput: measured events (default 200)")
    parser.add_argument("--warmup", type=int, default=5, help="throughput: unmeasured events first (default 5)")
    parser.add_argument("--concurrency", type=int, default=10, help="throughput: events awaiting their sidebar at once")
    parser.add_argument("--widgets", type=int, default=5, help="widgets per sidebar, one HTTP GET each")
    parser.add_argument("--idle-events", type=int, default=30, help="idle: sequential events (default 30)")
    parser.add_argument("--open-rate", type=float, default=20.0, help="open-loop: events per second (default 20)")
    parser.add_argument("--open-duration", type=float, default=60.0, help="open-loop: seconds of publishing")
    parser.add_argument("--open-drain", type=float, default=20.0, help="open-loop: wait past the last publish")
    parser.add_argument("--timeout", type=float, default=600.0, help="overall bound in seconds (default 600)")
    parser.add_argument("--output", type=Path, default=None, help="results JSON (default benchmarks/results/)")
    parser.add_argument(
        "--start",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start upstream, store, orchestrator and executor (default); --no-start uses a running stack",
    )
    parser.add_argument("--store", default="http://127.0.0.1:8000", help="with --no-start: the store URL")
    parser.add_argument(
        "--upstream",
        default="http://127.0.0.1:8901",
        help="with --no-start: a `benchmarks/workload.py upstream` the executor may reach",
    )
    parser.add_argument("--orchestrator-metrics", default="http://127.0.0.1:9101/metrics", help="with --no-start")
    parser.add_argument(
        "--admin-key", default=os.environ.get("STORE_ADMIN_KEY"), help="with --no-start: store admin key"
    )
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := set(args.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    if args.events < 1 or args.concurrency < 1 or args.widgets < 1 or args.warmup < 0 or args.idle_events < 1:
        parser.error("--events, --concurrency, --widgets and --idle-events must be at least 1, --warmup at least 0")
    if args.open_rate <= 0 or args.open_duration <= 0:
        parser.error("--open-rate and --open-duration must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = run_report("e2e", lambda: benchmark(args, stamp), args.timeout + CLEANUP_GRACE_S)
    if isinstance(report, int):
        return report
    print_report(report)
    path = write_report(report, args.output or RESULTS_DIR / f"e2e-{stamp}.json")
    print(f"results:     {relative(path)}")
    missing = report["scenarios"].get("throughput", {}).get("missing", 0)
    return 0 if missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
