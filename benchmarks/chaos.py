"""``make chaos`` / ``make soak``: nothing lost, nothing doubled, latency bounded, under load and faults.

It starts its own stack (the workload's upstream, the store, 2 orchestrators, 2 executors)
in a throw-away vhost and database. With ``--private-infra`` (what ``make chaos`` uses) it
also starts its own RabbitMQ node and FerretDB on spare ports, so stopping the broker or
freezing the database disturbs nothing else on the machine.

It first measures capacity (a closed loop), then runs each scenario as an open loop at
``--sustained`` x capacity (or ``--overload`` x for the ``overload`` scenario), injecting the
scenario's fault ``--fault-at`` seconds in:

- ``none``: no fault, the reference p99;
- ``executor-kill``: kill -9 one executor (alternately) every 2 s for 10 s, each restarted;
- ``orchestrator-kill``: kill -9 one orchestrator, restarted;
- ``broker-restart``: ``rabbitmqctl stop_app`` then ``start_app`` (private infra only);
- ``db-freeze``: SIGSTOP FerretDB for 10 s, then SIGCONT (private infra only);
- ``db-restart``: kill -9 FerretDB and start it again (private infra only);
- ``overload``: no fault, ``--overload`` x capacity for ``--overload-s`` seconds;
- ``soak``: no fault, ``--soak-rate`` x capacity for ``--soak-s`` seconds, with each service's RSS.

Every event is published with publisher confirms. ``sidebar.ready`` messages are collected on
a durable queue of the benchmark's own, so none is missed while the broker restarts. A
confirmed event is lost if no sidebar arrives before the drain ends; a second sidebar for an
event is a duplicate, counted by whether it carries the first one's ``event_id``. Latency is
publish to first ``sidebar.ready``, over served sidebars (not ``expired``); ``recovered p99``
is the p99 of events published from 30 s after the fault ended (the load goes on for at least
15 s of those). Dead letters are read from the vhost's dead-letter queue. It prints the table
and writes JSON to ``benchmarks/results/chaos-<timestamp>.json``. Traffic stays on loopback.

    .venv/bin/python benchmarks/chaos.py --private-infra
    .venv/bin/python benchmarks/chaos.py --scenarios none,overload --duration 20
    .venv/bin/python benchmarks/chaos.py --private-infra --soak
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aio_pika
import httpx
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.e2e import bench_specs, create_target, opened_message, realistic_widgets, upstream_command
from benchmarks.harness import (
    DEFAULT_MONGODB_URL,
    DEFAULT_RABBITMQ_URL,
    LOCAL_LOGS,
    LOOPBACK,
    PYTHON,
    RESULTS_DIR,
    ROOT,
    BenchmarkError,
    Process,
    drop_database,
    free_port,
    free_port_in,
    isolated_vhost,
    machine_facts,
    rabbitmqctl_output,
    relative,
    run_bounded,
    start_process,
    stop_process,
    wait_http,
    write_report,
)
from benchmarks.workload import realistic_delays, stats_ms
from shared.topology import (
    CONVERSATION_OPENED_KEY,
    CONVERSATION_OPENED_QUEUE,
    DEAD_LETTER_QUEUE,
    EXCHANGE,
    SIDEBAR_READY_PREFIX,
    WIDGET_JOBS_QUEUE,
)

FAULT_SCENARIOS = ("executor-kill", "orchestrator-kill", "broker-restart", "db-freeze", "db-restart")
PRIVATE_ONLY = ("broker-restart", "db-freeze", "db-restart")
SCENARIOS = ("none", *FAULT_SCENARIOS, "overload")
RECOVERY_AFTER_S = 30.0
RECOVERY_WINDOW_S = 15.0  # at least this much load after RECOVERY_AFTER_S, to measure the recovered p99
EXECUTOR_CONCURRENCY = 8
WIDGETS = 3


# --- infrastructure -------------------------------------------------------------------------


@dataclass
class Infra:
    """The broker and database the stack runs against; ``node`` and ``ferretdb`` only when private."""

    amqp_url: str
    mongodb_url: str
    node: str | None = None
    ferretdb_port: int | None = None

    def rabbitmqctl(self, *args: str) -> str:
        return rabbitmqctl_output(*args, node=self.node)

    def ferretdb_pid(self) -> int:
        if self.ferretdb_port is None:
            raise BenchmarkError("database faults need --private-infra")
        return int((ROOT / ".local" / "run" / f"ferretdb-{self.ferretdb_port}.pid").read_text().strip())


def shared_infra() -> Infra:
    """The broker and database at RABBITMQ_URL and MONGODB_URL (the suite adds its own vhost and database)."""
    return Infra(
        os.environ.get("RABBITMQ_URL", DEFAULT_RABBITMQ_URL), os.environ.get("MONGODB_URL", DEFAULT_MONGODB_URL)
    )


def _services(command: str, amqp_url: str, mongodb_url: str) -> None:
    env = {**os.environ, "RABBITMQ_URL": amqp_url, "MONGODB_URL": mongodb_url}
    subprocess.run(["bash", "scripts/services.sh", command], cwd=ROOT, env=env, check=True, timeout=300)


@asynccontextmanager
async def private_infra() -> AsyncIterator[Infra]:
    """Its own RabbitMQ node and FerretDB on spare ports, stopped afterwards."""
    # services.sh gives a node the Erlang distribution port AMQP port + 20000: keep both valid.
    amqp_port = free_port_in(range(5700, 5800), "5700-5799")
    mongo_port = free_port_in(range(27100, 27200), "27100-27199")
    infra = Infra(
        f"amqp://guest:guest@{LOOPBACK}:{amqp_port}/",
        f"mongodb://{LOOPBACK}:{mongo_port}/",
        node=f"sidebar-{amqp_port}@localhost",
        ferretdb_port=mongo_port,
    )
    try:
        await asyncio.to_thread(_services, "up", infra.amqp_url, infra.mongodb_url)
        yield infra
    finally:
        await asyncio.to_thread(_stop_private, infra)


def _stop_private(infra: Infra) -> None:
    run = ROOT / ".local" / "run"
    try:
        os.kill(infra.ferretdb_pid(), signal.SIGCONT)
        os.kill(infra.ferretdb_pid(), signal.SIGTERM)
    except (OSError, ValueError, BenchmarkError):
        pass
    (run / f"ferretdb-{infra.ferretdb_port}.pid").unlink(missing_ok=True)
    try:
        infra.rabbitmqctl("stop")
    except BenchmarkError as exc:
        print(f"warning: {exc}", file=sys.stderr)
    for marker in run.glob("rabbitmq-*.env"):
        if f"NODE={infra.node}" in marker.read_text():
            marker.unlink(missing_ok=True)


# --- the stack ------------------------------------------------------------------------------


@dataclass
class Stack:
    infra: Infra
    amqp_url: str  # the vhost's
    vhost: str
    env: dict[str, str]
    commands: dict[str, list[str]]
    log_dir: Path
    store_url: str
    upstream_url: str
    admin_key: str
    processes: dict[str, Process] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)

    async def db_buckets(self) -> Counter[tuple[str, float]]:
        """The orchestrators' ``orchestrator_db_command_seconds`` buckets, (command, le) -> count."""
        buckets: Counter[tuple[str, float]] = Counter()
        async with httpx.AsyncClient(timeout=5) as client:
            for name, port in self.metrics_ports.items():
                if not name.startswith("orchestrator"):
                    continue
                try:
                    text = (await client.get(f"http://{LOOPBACK}:{port}/metrics")).text
                except httpx.HTTPError:
                    continue
                for family in text_string_to_metric_families(text):
                    for sample in family.samples:
                        if sample.name == "orchestrator_db_command_seconds_bucket":
                            buckets[(sample.labels["command"], float(sample.labels["le"]))] += sample.value
        return buckets

    async def start(self, name: str) -> Process:
        env = dict(self.env)
        if name.startswith(("orchestrator", "executor")):
            self.metrics_ports[name] = port = free_port()
            env[f"{name.split('-')[0].upper()}_METRICS_PORT"] = str(port)
        self.processes[name] = process = await start_process(name, self.commands[name], env, self.log_dir)
        return process

    async def kill9(self, name: str) -> None:
        process = self.processes[name]
        if process.proc.returncode is None:
            os.killpg(process.proc.pid, signal.SIGKILL)
            await process.proc.wait()

    async def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            await stop_process(process)

    def rss_kib(self) -> dict[str, int]:
        """Each service process's resident set (its own; sandbox children come and go)."""
        sizes = {}
        for name, process in self.processes.items():
            try:
                status = Path(f"/proc/{process.proc.pid}/status").read_text()
            except OSError:
                continue
            line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
            sizes[name] = int(line.split()[1])
        return sizes

    def prefetch(self) -> dict[str, list[int]]:
        """The prefetch each consumer of the two work queues really has, as the broker reports it."""
        out = self.infra.rabbitmqctl(
            "list_consumers", "-p", self.vhost, "--formatter", "json", "queue_name", "prefetch_count"
        )
        found: dict[str, list[int]] = {CONVERSATION_OPENED_QUEUE: [], WIDGET_JOBS_QUEUE: []}
        for row in json.loads(out or "[]"):
            if row["queue_name"] in found:
                found[row["queue_name"]].append(int(row["prefetch_count"]))
        return {queue: sorted(counts) for queue, counts in found.items()}


STACK_NAMES = ("upstream", "store", "orchestrator-1", "orchestrator-2", "executor-1", "executor-2")


@asynccontextmanager
async def started_stack(infra: Infra, stamp: str, extra_env: dict[str, str]) -> AsyncIterator[Stack]:
    async with isolated_vhost(infra.amqp_url, "chaos", node=infra.node) as amqp_url:
        vhost = unquote(urlsplit(amqp_url).path[1:])
        database = f"chaos_{stamp}_{secrets.token_hex(3)}"
        ports = {"store": free_port(), "upstream": free_port()}
        admin_key = secrets.token_urlsafe(24)
        env = {
            **os.environ,
            "RABBITMQ_URL": amqp_url,
            "MONGODB_URL": infra.mongodb_url,
            "MONGODB_DATABASE": database,
            "STORE_ADMIN_KEY": admin_key,
            "STORE_HOST": LOOPBACK,
            "STORE_PORT": str(ports["store"]),
            "METRICS_HOST": LOOPBACK,
            "EXECUTOR_CONCURRENCY": str(EXECUTOR_CONCURRENCY),
            "EXECUTOR_EGRESS_ALLOW": f"{LOOPBACK}:{ports['upstream']}",
            **extra_env,
        }
        log_dir = LOCAL_LOGS / f"chaos-{stamp}"
        log_dir.mkdir(parents=True, exist_ok=True)
        service = {"orchestrator": [PYTHON, "-m", "orchestrator"], "executor": [PYTHON, "-m", "executor"]}
        commands = {
            "upstream": upstream_command(ports["upstream"], realistic_delays(realistic_widgets(WIDGETS))),
            "store": [PYTHON, "-m", "store"],
            **{name: service[name.split("-")[0]] for name in STACK_NAMES[2:]},
        }
        stack = Stack(
            infra,
            amqp_url,
            vhost,
            env,
            commands,
            log_dir,
            f"http://{LOOPBACK}:{ports['store']}",
            f"http://{LOOPBACK}:{ports['upstream']}",
            admin_key,
        )
        try:
            for name in STACK_NAMES:
                await stack.start(name)
            await wait_http(
                [f"{stack.upstream_url}/healthz", f"{stack.store_url}/healthz"], list(stack.processes.values()), 90
            )
            print(f"stack up: vhost {vhost}, database {database}, logs in {relative(log_dir)}", flush=True)
            yield stack
        finally:
            await stack.stop()
            await asyncio.to_thread(drop_database, infra.mongodb_url, database)


# --- the ledger: every event and every sidebar ------------------------------------------------


@dataclass
class Event:
    published: float
    confirmed: bool = False
    error: str | None = None
    sidebars: list[tuple[float, str, list[str]]] = field(default_factory=list)  # (arrived, event_id, statuses)


@dataclass
class Ledger:
    events: dict[str, Event] = field(default_factory=dict)
    waiters: dict[str, asyncio.Future[None]] = field(default_factory=dict)

    async def on_sidebar(self, message: AbstractIncomingMessage) -> None:
        arrived = time.monotonic()
        body = json.loads(message.body)
        event = self.events.get(body.get("trigger_event_id", ""))
        # A message redelivered to this collector (its connection dropped before the ack) is
        # the same message again, not a second sidebar: only a fresh delivery counts twice.
        again = message.redelivered and event is not None and any(s[1] == body["event_id"] for s in event.sidebars)
        if event is not None and not again:
            event.sidebars.append((arrived, body["event_id"], [w["status"] for w in body["widgets"]]))
            waiter = self.waiters.pop(body["trigger_event_id"], None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        await message.ack()

    def open_ids(self) -> list[str]:
        return [event_id for event_id, e in self.events.items() if e.confirmed and not e.sidebars]


@dataclass
class Load:
    """Publishes ``conversation.opened`` with confirms and collects ``sidebar.ready`` on a durable queue."""

    connection: AbstractRobustConnection
    exchange: AbstractExchange
    target: Any
    ledger: Ledger

    async def publish(self, event_id: str) -> Event:
        event = self.ledger.events[event_id] = Event(time.monotonic())
        try:
            await asyncio.wait_for(
                self.exchange.publish(
                    opened_message(self.target, event_id), routing_key=CONVERSATION_OPENED_KEY, mandatory=True
                ),
                10,
            )
            event.confirmed = True
        except Exception as exc:  # noqa: BLE001 - an unconfirmed publish is a row in the table, not a crash
            event.error = f"{type(exc).__name__}: {exc}"[:200]
        return event

    async def open_loop(self, rate: float, until: Callable[[], bool]) -> list[str]:
        """One event every 1/``rate`` s until ``until()`` says stop."""
        began, ids = time.monotonic(), []
        async with asyncio.TaskGroup() as tasks:
            for i in itertools.count():
                await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
                if until():
                    break
                ids.append(event_id := uuid.uuid4().hex)
                tasks.create_task(self.publish(event_id))
        return ids

    async def closed_loop(self, events: int, concurrency: int) -> float:
        """Sidebars per second with ``concurrency`` awaiting theirs: the stack's capacity."""
        slots = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with slots:
                event_id = uuid.uuid4().hex
                waiter = self.ledger.waiters[event_id] = asyncio.get_running_loop().create_future()
                if (await self.publish(event_id)).confirmed:
                    await asyncio.wait_for(waiter, 60)

        began = time.monotonic()
        await asyncio.gather(*(one() for _ in range(events)))
        return events / (time.monotonic() - began)

    async def drain(self, ids: list[str], bound_s: float) -> None:
        """Until every confirmed event of ``ids`` has its sidebar, or ``bound_s`` passed."""
        give_up = time.monotonic() + bound_s
        while time.monotonic() < give_up:
            if all(self.ledger.events[i].sidebars or not self.ledger.events[i].confirmed for i in ids):
                return
            await asyncio.sleep(0.2)


@asynccontextmanager
async def load_on(stack: Stack) -> AsyncIterator[Load]:
    async with httpx.AsyncClient(base_url=stack.store_url, timeout=30) as client:
        target = await create_target(
            client, stack.admin_key, "chaos", bench_specs(realistic_widgets(WIDGETS), stack.upstream_url)
        )
    connection = await aio_pika.connect_robust(stack.amqp_url, reconnect_interval=0.5)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        ledger = Ledger()
        collect = await connection.channel()
        await collect.set_qos(prefetch_count=500)
        queue = await collect.declare_queue(f"chaos.sidebars.{uuid.uuid4().hex[:8]}", durable=True)
        await queue.bind(EXCHANGE, routing_key=f"{SIDEBAR_READY_PREFIX}.{target.business_id}.#")
        await queue.consume(ledger.on_sidebar)
        yield Load(connection, exchange, target, ledger)
    finally:
        await connection.close()


# --- faults ---------------------------------------------------------------------------------

Fault = Callable[[Stack], Awaitable[None]]


async def _restart(stack: Stack, name: str) -> None:
    await stack.kill9(name)
    await stack.start(name)


async def executor_kills(stack: Stack) -> None:
    for n in range(5):
        await _restart(stack, f"executor-{n % 2 + 1}")
        await asyncio.sleep(2)


async def orchestrator_kill(stack: Stack) -> None:
    await _restart(stack, "orchestrator-1")


async def broker_restart(stack: Stack) -> None:
    await asyncio.to_thread(stack.infra.rabbitmqctl, "stop_app")
    await asyncio.to_thread(stack.infra.rabbitmqctl, "start_app")


async def db_freeze(stack: Stack) -> None:
    pid = stack.infra.ferretdb_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(10)
    finally:
        os.kill(pid, signal.SIGCONT)


async def db_restart(stack: Stack) -> None:
    os.kill(stack.infra.ferretdb_pid(), signal.SIGKILL)
    await asyncio.to_thread(_services, "up", stack.infra.amqp_url, stack.infra.mongodb_url)


FAULTS: dict[str, Fault] = {
    "executor-kill": executor_kills,
    "orchestrator-kill": orchestrator_kill,
    "broker-restart": broker_restart,
    "db-freeze": db_freeze,
    "db-restart": db_restart,
}


# --- a scenario -----------------------------------------------------------------------------


async def dead_letters(stack: Stack) -> int:
    """The dead-letter queue's depth, emptied for the next scenario."""
    connection = await aio_pika.connect_robust(stack.amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(DEAD_LETTER_QUEUE, passive=True)
        count = queue.declaration_result.message_count or 0
        await queue.purge()
        return count
    finally:
        await connection.close()


def db_quantiles(before: Counter[tuple[str, float]], after: Counter[tuple[str, float]]) -> dict[str, Any]:
    """Per command, the count and the bucket bounds holding p50 and p99 over the scenario."""
    out: dict[str, Any] = {}
    for command in sorted({c for c, _ in after}):
        cumulative = sorted(
            (le, max(0.0, after[(command, le)] - before[(command, le)])) for c, le in after if c == command
        )
        total = cumulative[-1][1] if cumulative else 0.0
        if total <= 0:
            continue
        bound = {q: next(le for le, n in cumulative if n >= q * total) for q in (0.5, 0.99)}
        out[command] = {"count": int(total), "p50_le_s": bound[0.5], "p99_le_s": bound[0.99]}
    return out


def summarise(
    name: str, rate: float, ids: list[str], ledger: Ledger, fault_end: float | None, dead: int
) -> dict[str, Any]:
    events = [ledger.events[i] for i in ids]
    confirmed = [e for e in events if e.confirmed]
    received = [e for e in confirmed if e.sidebars]
    statuses: Counter[str] = Counter(s for e in received for s in e.sidebars[0][2])
    served = [e for e in received if "expired" not in e.sidebars[0][2]]
    latency = [(e.sidebars[0][0] - e.published) * 1000 for e in served]
    window = [e for e in received if fault_end is not None and e.published >= fault_end + RECOVERY_AFTER_S]
    recovered = [(e.sidebars[0][0] - e.published) * 1000 for e in window if "expired" not in e.sidebars[0][2]]
    same = sum(1 for e in received for s in e.sidebars[1:] if s[1] == e.sidebars[0][1])
    other = sum(1 for e in received for s in e.sidebars[1:] if s[1] != e.sidebars[0][1])
    return {
        "scenario": name,
        "rate_per_s": round(rate, 1),
        "published": len(events),
        "confirmed": len(confirmed),
        "received": len(received),
        "lost": len(confirmed) - len(received),
        "duplicated_same_id": same,
        "duplicated_other_id": other,
        "expired_sidebars": len(received) - len(served),
        "statuses": dict(statuses),
        "latency_ms": stats_ms(latency) if latency else None,
        "recovered_events": len(window),
        "recovered_latency_ms": stats_ms(recovered) if recovered else None,
        "dead_letters": dead,
        "lost_sample": [i for i in ids if ledger.events[i].confirmed and not ledger.events[i].sidebars][:10],
        "unconfirmed_errors": dict(Counter(e.error for e in events if e.error).most_common(3)),
    }


async def scenario(
    stack: Stack, load: Load, name: str, rate: float, duration_s: float, fault_at_s: float, drain_s: float
) -> dict[str, Any]:
    print(f"\n--> {name}: {rate:.1f} events/s for {duration_s:.0f}s", flush=True)
    fault_end: float | None = None
    fault = FAULTS.get(name)

    async def inject() -> None:
        nonlocal fault_end
        await asyncio.sleep(fault_at_s)
        assert fault is not None
        await fault(stack)
        fault_end = time.monotonic()
        print(f"    fault {name} ended {fault_end - began:.1f}s in", flush=True)

    def until() -> bool:
        """The scenario's duration, and for a fault, long enough after it to see the recovery."""
        now = time.monotonic()
        if now < began + duration_s:
            return False
        return fault is None or (fault_end is not None and now >= fault_end + RECOVERY_AFTER_S + RECOVERY_WINDOW_S)

    db_before = await stack.db_buckets()
    began = time.monotonic()
    injector = asyncio.create_task(inject()) if fault is not None else None
    ids = await load.open_loop(rate, until)
    if injector is not None:
        await injector
    await load.drain(ids, drain_s)
    dead = await dead_letters(stack)
    row = summarise(name, rate, ids, load.ledger, fault_end, dead)
    row["db_command_seconds"] = db_quantiles(db_before, await stack.db_buckets())
    print(f"    {json.dumps({k: v for k, v in row.items() if k not in ('statuses', 'lost_sample')})}", flush=True)
    return row


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's goal, row by row; an empty list means every row is green."""
    failures = []
    reference = next((r["latency_ms"]["p99"] for r in rows if r["scenario"] == "none" and r["latency_ms"]), None)
    for row in rows:
        name = row["scenario"]
        if row["lost"]:
            failures.append(f"{name}: {row['lost']} confirmed events got no sidebar")
        if row["dead_letters"]:
            failures.append(f"{name}: {row['dead_letters']} dead letters")
        if row["duplicated_other_id"]:
            failures.append(f"{name}: {row['duplicated_other_id']} duplicates with a different sidebar id")
        if name in ("none", "overload", "soak") and row["duplicated_same_id"]:
            failures.append(f"{name}: {row['duplicated_same_id']} duplicates without a fault")
        recovered = row["recovered_latency_ms"]
        if name in FAULT_SCENARIOS and row["recovered_events"] and not recovered:
            failures.append(f"{name}: every event from 30 s after the fault on expired")
        if name in FAULT_SCENARIOS and reference and recovered and recovered["p99"] > 2 * reference:
            failures.append(f"{name}: p99 {recovered['p99']:.0f} ms 30 s after the fault, over 2x {reference:.0f} ms")
    return failures


def rss_failures(rss: dict[str, dict[str, Any]]) -> list[str]:
    return [f"soak: {name}'s RSS grew {r['growth']:+.1%}" for name, r in rss.items() if r["growth"] > 0.10]


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "\n| scenario | rate/s | published | confirmed | received | lost | dup (same id / other) "
        "| statuses | p50 | p99 | recovered p99 | dead letters |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lat, rec = r["latency_ms"] or {}, r["recovered_latency_ms"] or {}
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items()))
        print(
            f"| {r['scenario']} | {r['rate_per_s']} | {r['published']} | {r['confirmed']} | {r['received']} "
            f"| {r['lost']} | {r['duplicated_same_id']} / {r['duplicated_other_id']} | {statuses} "
            f"| {lat.get('p50', 'n/a')} | {lat.get('p99', 'n/a')} | {rec.get('p99', 'n/a')} | {r['dead_letters']} |"
        )


# --- the suite ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    scenarios: tuple[str, ...]
    duration_s: float = 60.0
    fault_at_s: float = 5.0
    sustained: float = 0.7
    overload: float = 2.0
    overload_s: float = 60.0
    drain_s: float = 90.0
    capacity: float | None = None  # sidebars/s; measured when None
    soak_s: float = 0.0
    soak_rate: float = 0.5


async def run_suite(infra: Infra, plan: Plan, stamp: str, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": machine_facts(), "plan": plan.__dict__, "rows": []}
    async with started_stack(infra, stamp, extra_env or {}) as stack, load_on(stack) as load:
        warm = await load.closed_loop(10, 2)  # the stack serves end to end
        capacity = plan.capacity or await load.closed_loop(120, 24)
        report["warm_up_per_s"], report["capacity_per_s"] = round(warm, 1), round(capacity, 1)
        report["prefetch"] = stack.prefetch()
        print(f"capacity {capacity:.1f} sidebars/s; prefetch as the broker reports it: {report['prefetch']}")
        for name in plan.scenarios:
            if name == "overload":
                rate, duration = plan.overload * capacity, plan.overload_s
            else:
                rate, duration = plan.sustained * capacity, plan.duration_s
            report["rows"].append(await scenario(stack, load, name, rate, duration, plan.fault_at_s, plan.drain_s))
        if plan.soak_s:
            before = stack.rss_kib()
            report["rows"].append(
                await scenario(stack, load, "soak", plan.soak_rate * capacity, plan.soak_s, 0, plan.drain_s)
            )
            after = stack.rss_kib()
            report["rss_kib"] = {
                name: {"before": before[name], "after": after[name], "growth": after[name] / before[name] - 1}
                for name in before
                if name in after
            }
    report["failures"] = verdicts(report["rows"]) + rss_failures(report.get("rss_kib", {}))
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated, from: " + ", ".join(SCENARIOS)
    )
    parser.add_argument(
        "--private-infra", action="store_true", help="its own RabbitMQ node and FerretDB (faults need it)"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load per scenario")
    parser.add_argument("--fault-at", type=float, default=5.0, help="seconds into the load the fault starts")
    parser.add_argument("--sustained", type=float, default=0.7, help="load as a fraction of the measured capacity")
    parser.add_argument("--overload", type=float, default=2.0, help="the overload scenario's multiple of capacity")
    parser.add_argument("--overload-s", type=float, default=60.0)
    parser.add_argument("--capacity", type=float, default=None, help="sidebars/s; measured when not given")
    parser.add_argument("--drain", type=float, default=90.0, help="seconds to wait for the last sidebars")
    parser.add_argument("--soak", action="store_true", help="only the soak: 30 min at half capacity, with RSS")
    parser.add_argument("--soak-s", type=float, default=1800.0)
    parser.add_argument("--output", type=Path, default=None)
    return parser.parse_args(argv)


async def main_async(args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    scenarios = () if args.soak else tuple(s for s in args.scenarios.split(",") if s)
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise BenchmarkError(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if not args.private_infra and set(scenarios) & set(PRIVATE_ONLY):
        raise BenchmarkError(f"{', '.join(sorted(set(scenarios) & set(PRIVATE_ONLY)))} need --private-infra")
    plan = Plan(
        scenarios=scenarios,
        duration_s=args.duration,
        fault_at_s=args.fault_at,
        sustained=args.sustained,
        overload=args.overload,
        overload_s=args.overload_s,
        drain_s=args.drain,
        capacity=args.capacity,
        soak_s=args.soak_s if args.soak else 0.0,
    )
    if args.private_infra:
        async with private_infra() as infra:
            return await run_suite(infra, plan, stamp)
    infra = Infra(
        os.environ.get("RABBITMQ_URL", DEFAULT_RABBITMQ_URL), os.environ.get("MONGODB_URL", DEFAULT_MONGODB_URL)
    )
    return await run_suite(infra, plan, stamp)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        report = run_bounded(lambda: main_async(args, stamp), 3 * 3600)
    except BenchmarkError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    print_table(report["rows"])
    if "rss_kib" in report:
        for name, rss in report["rss_kib"].items():
            print(f"RSS {name}: {rss['before']} -> {rss['after']} KiB ({rss['growth']:+.1%})")
    path = write_report(report, args.output or RESULTS_DIR / f"chaos-{stamp}.json")
    print(f"\nwrote {relative(path)}")
    for failure in report["failures"]:
        print(f"NOT MET: {failure}")
    print("every row green" if not report["failures"] else f"{len(report['failures'])} goal(s) not met")
    return 0 if not report["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
