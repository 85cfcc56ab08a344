"""The peer: the product's workload as a Celery chord, with no sandbox.

RabbitMQ broker (a vhost of its own), Redis result backend (a ``redis-server`` this script
starts on a free loopback port, data in a temp dir, and stops), one Celery worker. Each
widget is a task that ``exec``s the same widget code (``benchmarks/workload.py``) and calls
``get_sidebar_data(context)`` with the same context; the chord's callback writes the sidebar
to the same MongoDB server (a throw-away database: the history entry and the latest, the state
the product keeps) and publishes it as ``sidebar.ready.<business>.<conversation>`` on a
``sidebar`` topic exchange, where the client awaits it (``benchmarks/load.py``, never polling).

Variants (``--variant``):

- ``threads``: threads pool of ``--worker-concurrency`` (10); the client sends the chord with
  the context and the widgets' code.
- ``prefork``: the same with the prefork pool.
- ``hop``: threads pool, quorum queues and publisher confirms; the client sends a
  ``conversation.opened`` task that loads context and widgets from the database by id and then
  launches the chord.

Widgets stamp ``finished_at`` (wall clock) on their result, so the first widget's completion
stands in for the product's first ``sidebar.widget`` card.

    .venv/bin/python benchmarks/peers/celery_chord.py --variant threads --events 200
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aio_pika
from celery import Celery, chord
from kombu import Exchange
from pymongo import MongoClient

from benchmarks.cpu import CpuMeter
from benchmarks.cpu import describe as describe_cpu
from benchmarks.harness import (
    DEFAULT_MONGODB_URL,
    DEFAULT_RABBITMQ_URL,
    LOCAL_LOGS,
    LOOPBACK,
    PYTHON,
    RESULTS_DIR,
    BenchmarkError,
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
    Submit,
    closed_loop,
    measured_throughput,
    open_loop,
    until_serving,
    watch_sidebars,
)
from benchmarks.workload import (
    REALISTIC_FIRST,
    THROUGHPUT_FIRST,
    BenchWidget,
    bench_context,
    bench_widgets,
    realistic_delays,
    run_widget_code,
)
from shared.topology import EXCHANGE, SIDEBAR_READY_PREFIX

VARIANTS = ("threads", "prefork", "hop")
SCENARIOS = ("throughput", "open-loop")
QUEUE = "bench-chord"
STARTUP_TIMEOUT_S = 60.0
CLEANUP_GRACE_S = 60.0
CONVERSATION_ID = "conv-bench"


# --- the Celery side: app, tasks, worker -----------------------------------------------------


@dataclass(frozen=True)
class PeerConfig:
    broker_url: str
    backend_url: str
    mongodb_url: str
    database: str
    variant: str

    @property
    def quorum(self) -> bool:
        return self.variant == "hop"


class Database:
    """One MongoClient per process: pymongo is not fork-safe, so a prefork child opens its own."""

    def __init__(self, url: str, name: str) -> None:
        self._url, self._name = url, name
        self._pid = -1
        self._client: MongoClient[dict[str, Any]] | None = None

    def get(self) -> Any:
        if self._client is None or self._pid != os.getpid():
            self._client = MongoClient(self._url, serverSelectionTimeoutMS=10_000)
            self._pid = os.getpid()
        return self._client[self._name]


def make_app(config: PeerConfig) -> Celery:
    app = Celery("bench_chord", broker=config.broker_url, backend=config.backend_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE,
        result_expires=600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_enable_remote_control=False,
    )
    if config.quorum:
        app.conf.update(task_default_queue_type="quorum", broker_transport_options={"confirm_publish": True})
    db = Database(config.mongodb_url, config.database)
    sidebar_exchange = Exchange(EXCHANGE, type="topic", durable=True)

    @app.task(name="bench.run_widget")
    def run_widget(widget: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        return run_widget_code(widget, context)

    @app.task(name="bench.assemble", ignore_result=True)
    def assemble(results: list[dict[str, Any]], trigger: dict[str, str]) -> None:
        business_id, conversation_id = trigger["business_id"], trigger["conversation_id"]
        sidebar = {
            "event_id": trigger["event_id"],
            "business_id": business_id,
            "conversation_id": conversation_id,
            "trigger_event_id": trigger["event_id"],
            "generated_at": datetime.now(UTC).isoformat(),
            "widgets": sorted(results, key=lambda w: (w["position"], w["widget_id"])),
        }
        database = db.get()
        database.sidebar_history.insert_one({"_id": f"{business_id}:{trigger['event_id']}", **sidebar})
        database.sidebars.replace_one({"_id": f"{business_id}:{conversation_id}"}, sidebar, upsert=True)
        with app.producer_pool.acquire(block=True) as producer:
            producer.publish(
                json.dumps(sidebar, default=str),
                exchange=sidebar_exchange,
                routing_key=f"{SIDEBAR_READY_PREFIX}.{business_id}.{conversation_id}",
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                declare=[sidebar_exchange],
            )

    @app.task(name="bench.conversation_opened", ignore_result=True)
    def conversation_opened(event: dict[str, str]) -> None:
        database = db.get()
        business_id, conversation_id = event["business_id"], event["conversation_id"]
        business = database.businesses.find_one({"_id": business_id})
        conversation = database.conversations.find_one({"_id": f"{business_id}:{conversation_id}"})
        customer = database.customers.find_one({"_id": f"{business_id}:{conversation['customer_id']}"})
        widgets = list(database.widgets.find({"business_id": business_id, "active": True}).sort("position"))
        context = {
            "conversation": conversation["context"],
            "customer": customer["context"],
            "business": {"id": business_id, "name": business["name"]},
        }
        header = [run_widget.s(_widget_message(w), context) for w in widgets]
        chord(header)(assemble.s(event))

    return app


def _widget_message(widget: dict[str, Any]) -> dict[str, Any]:
    return {k: widget[k] for k in ("widget_id", "name", "position", "code")}


def serve_worker(config: PeerConfig, concurrency: int) -> None:
    pool = "prefork" if config.variant == "prefork" else "threads"
    make_app(config).worker_main(
        [
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            f"--queues={QUEUE}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


# --- the client side: redis, seeding, load -----------------------------------------------------


@asynccontextmanager
async def redis_server(log_dir: Path) -> AsyncIterator[str]:
    """A private ``redis-server`` on a free loopback port, no persistence, data in a temp dir."""
    executable = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    if executable is None:
        raise BenchmarkError("redis-server not found: apt-get install -y redis-server (make bench does)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as data_dir:
        args = [
            executable,
            "--bind",
            LOOPBACK,
            "--port",
            str(port),
            "--dir",
            data_dir,
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        process = await start_process(
            "redis", [*args, "--protected-mode", "yes", "--daemonize", "no"], dict(os.environ), log_dir
        )
        try:
            await _until_redis_answers(port, process)
            yield f"redis://{LOOPBACK}:{port}/0"
        finally:
            await stop_process(process, grace_s=10)


async def _until_redis_answers(port: int, process: Any) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
            writer.write(b"PING\r\n")
            answer = await reader.readline()
            writer.close()
            if answer.startswith(b"+PONG"):
                return
        except OSError:
            pass
        if process.proc.returncode is not None or time.monotonic() > deadline:
            raise BenchmarkError(f"redis-server did not start:\n{process.tail()}")
        await asyncio.sleep(0.1)


def seed(db_url: str, database: str, business_id: str, widgets: list[dict[str, Any]]) -> None:
    """What the hop task reads: the business, conversation, customer and the widgets."""
    context = bench_context(business_id, CONVERSATION_ID)
    client: MongoClient[dict[str, Any]]
    with MongoClient(db_url, serverSelectionTimeoutMS=10_000) as client:
        db: Any = client[database]
        db.businesses.insert_one({"_id": business_id, "name": context["business"]["name"]})
        db.customers.insert_one({"_id": f"{business_id}:bench-customer", "context": context["customer"]})
        db.conversations.insert_one(
            {
                "_id": f"{business_id}:{CONVERSATION_ID}",
                "customer_id": "bench-customer",
                "context": context["conversation"],
            }
        )
        db.widgets.insert_many(
            [
                {"_id": f"{business_id}:{w['widget_id']}", "business_id": business_id, "active": True, **w}
                for w in widgets
            ]
        )


@dataclass(frozen=True)
class Business:
    business_id: str
    widgets: list[dict[str, Any]]


def business(label: str, widgets: list[BenchWidget], api_base: str) -> Business:
    return Business(f"bench-{label}-{secrets.token_hex(3)}", [w.message(api_base) for w in widgets])


def submitter(app: Celery, config: PeerConfig, target: Business, sender: ThreadPoolExecutor) -> Submit:
    """Sends on one thread of its own: Celery's client is blocking, and the loop must keep
    timestamping arrivals."""
    context = bench_context(target.business_id, CONVERSATION_ID)

    def send(event_id: str) -> None:
        trigger = {"event_id": event_id, "business_id": target.business_id, "conversation_id": CONVERSATION_ID}
        if config.variant == "hop":
            app.send_task("bench.conversation_opened", args=(trigger,), ignore_result=True)
            return
        header = [app.signature("bench.run_widget", args=(w, context)) for w in target.widgets]
        chord(header)(app.signature("bench.assemble", args=(trigger,)))

    async def submit(event_id: str) -> None:
        await asyncio.get_running_loop().run_in_executor(sender, send, event_id)

    return submit


async def benchmark(args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    deadline = time.monotonic() + args.timeout
    log_dir = LOCAL_LOGS / f"bench-chord-{args.variant}-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    mongodb_url = os.environ.get("MONGODB_URL", DEFAULT_MONGODB_URL)
    database = f"bench_chord_{stamp}_{secrets.token_hex(3)}"
    report: dict[str, Any] = {
        "benchmark": "celery_chord",
        "system": f"celery-chord-{args.variant}",
        "machine": machine_facts(),
        "config": {k: v for k, v in vars(args).items() if k != "output"},
        "scenarios": {},
    }
    async with AsyncExitStack() as stack:
        amqp_url = await stack.enter_async_context(
            isolated_vhost(os.environ.get("RABBITMQ_URL", DEFAULT_RABBITMQ_URL), f"chord-{stamp}")
        )
        backend_url = await stack.enter_async_context(redis_server(log_dir))
        # Celery's results unsubscribe from Redis when collected: collect them while it still runs.
        stack.callback(gc.collect)
        stack.push_async_callback(asyncio.to_thread, drop_database, mongodb_url, database)
        config = PeerConfig(amqp_url, backend_url, mongodb_url, database, args.variant)

        throughput_widgets = bench_widgets(args.widgets, THROUGHPUT_FIRST)
        realistic = bench_widgets(args.widgets, REALISTIC_FIRST)
        upstream_port = free_port()
        upstream_cmd = [PYTHON, "benchmarks/workload.py", "upstream", "--host", LOOPBACK, "--port", str(upstream_port)]
        for prefix, seconds in realistic_delays(realistic).items():
            upstream_cmd += ["--delay", f"{prefix}={seconds}"]
        env = dict(os.environ)
        upstream = await start_process("upstream", upstream_cmd, env, log_dir)
        stack.push_async_callback(stop_process, upstream)
        api_base = f"http://{LOOPBACK}:{upstream_port}"
        await wait_http([f"{api_base}/healthz"], [upstream], STARTUP_TIMEOUT_S)

        worker_cmd = [PYTHON, "benchmarks/peers/celery_chord.py", "worker", "--variant", args.variant]
        worker_cmd += ["--broker", amqp_url, "--backend", backend_url, "--mongodb", mongodb_url, "--database", database]
        worker_cmd += ["--worker-concurrency", str(args.worker_concurrency)]
        worker = await start_process("worker", worker_cmd, env, log_dir)
        stack.push_async_callback(stop_process, worker)

        amqp = await aio_pika.connect(amqp_url, timeout=30)
        stack.push_async_callback(amqp.close)
        channel = await amqp.channel()
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        app = make_app(config)
        stack.callback(app.close)
        sender = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="celery-send"))

        async def prepared(label: str, widgets: list[BenchWidget], *, cards: bool = True) -> tuple[Any, Submit]:
            target = business(label, widgets, api_base)
            await asyncio.to_thread(seed, mongodb_url, database, target.business_id, target.widgets)
            watch = await watch_sidebars(channel, exchange, target.business_id, cards=cards)
            submit = submitter(app, config, target, sender)
            if worker.proc.returncode is not None:
                raise BenchmarkError(f"the worker exited:\n{worker.tail()}")
            await until_serving(watch, submit, min(deadline, time.monotonic() + STARTUP_TIMEOUT_S))
            return watch, submit

        print(f"chord {args.variant}: worker up, logs in {relative(log_dir)}", flush=True)
        if "throughput" in args.scenarios:
            watch, submit = await prepared("throughput", throughput_widgets, cards=False)
            meter = CpuMeter({"celery worker": [worker.proc.pid], "upstream": [upstream.proc.pid]})
            report["scenarios"]["throughput"] = await measured_throughput(
                watch,
                submit,
                meter,
                warmup=args.warmup,
                events=args.events,
                concurrency=args.concurrency,
                widgets=args.widgets,
                deadline=deadline,
            )
        if "open-loop" in args.scenarios:
            watch, submit = await prepared("open-loop", realistic)
            await closed_loop(watch, submit, 2, 1, deadline)
            outcome = await open_loop(watch, submit, args.open_rate, args.open_duration, deadline, args.open_drain)
            delays = realistic_delays(realistic)
            summary = outcome.summary(args.widgets)
            summary["floor_ms"] = {"first_card": min(delays.values()) * 1000, "complete": max(delays.values()) * 1000}
            summary["config"] = {"rate_per_s": args.open_rate, "duration_s": args.open_duration}
            report["scenarios"]["open-loop"] = summary
    report["finished_at"] = datetime.now(UTC).isoformat()
    report["peer"] = {
        "variant": args.variant,
        "pool": "prefork" if args.variant == "prefork" else "threads",
        "worker_concurrency": args.worker_concurrency,
        "quorum_queues": config.quorum,
        "publisher_confirms": config.quorum,
        "conversation_opened_hop": args.variant == "hop",
    }
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", nargs="?", choices=("run", "worker"), default="run", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, default="threads")
    parser.add_argument("--scenarios", default="throughput", help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=10, help="events awaiting their sidebar at once")
    parser.add_argument("--widgets", type=int, default=5)
    parser.add_argument("--worker-concurrency", type=int, default=10, help="pool size (default 10)")
    parser.add_argument("--open-rate", type=float, default=20.0)
    parser.add_argument("--open-duration", type=float, default=60.0)
    parser.add_argument("--open-drain", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--output", type=Path, default=None)
    for internal in ("--broker", "--backend", "--mongodb", "--database"):
        parser.add_argument(internal, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := set(args.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "worker":
        serve_worker(
            PeerConfig(args.broker, args.backend, args.mongodb, args.database, args.variant), args.worker_concurrency
        )
        return 0
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = run_report("celery_chord", lambda: benchmark(args, stamp), args.timeout + CLEANUP_GRACE_S)
    if isinstance(report, int):
        return report
    for name, result in report["scenarios"].items():
        latency = result["latency_ms"]
        print(
            f"chord {args.variant} {name}: completed {result['completed']}/{result['submitted']}, "
            f"all ok {result['all_widgets_ok']}, p50 {latency['p50']} p99 {latency['p99']} ms, "
            f"{result['sidebars_per_s']} sidebars/s"
        )
        if "cpu_ms_per_sidebar" in result:
            print(f"    CPU per sidebar: {describe_cpu(result['cpu_ms_per_sidebar'])}")
    path = write_report(report, args.output or RESULTS_DIR / f"chord-{args.variant}-{stamp}.json")
    print(f"results: {relative(path)}")
    return 0 if all(r["missing"] == 0 for r in report["scenarios"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
