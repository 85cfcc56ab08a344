"""A reference, not a product: the product's message and database path with nothing but the libraries.

Two processes, as the product has, doing the broker and database work a sidebar costs the
product, and nothing else: no validation, no logging, no metrics, no retries, no sandbox.
The ``orchestrator`` consumes ``conversation.opened`` from a quorum queue, inserts the run's
claim while it reads the conversation and then the customer by ``_id``, publishes
one job per widget to a quorum queue with publisher confirms and its exclusive results queue
as ``reply_to``, consumes the results without acks, publishes a card for each, then
``sidebar.ready``, inserts the history entry and upserts the latest sidebar (``$max``) and
acks the event. The ``executor`` consumes the jobs (prefetch 16), runs each widget's code
in a thread of its own process, unsandboxed, as the Celery chord does, publishes the result
with a confirm and acks the job. Same libraries as the product (aio-pika, PyMongo's async
client), same broker, database, upstream, widgets and client as ``benchmarks/e2e.py`` and
the chord. Where it is leaner than the product, beyond the code it leaves out, it stays a
lower bound: its documents are smaller (no widgets' logs in the history entry, no history
index to update), its messages carry no headers, it publishes through the default exchange
rather than the product's topic and direct ones, and its queues have no dead-letter
exchange or delivery limit.

What it answers: how fast the product's shape can be on this machine with this stack if all
of the product's own code cost nothing and its widgets ran unsandboxed. The product's CPU
per sidebar minus this one's is what the product's code and its sandbox cost.

    .venv/bin/python benchmarks/peers/bare_shape.py --events 600
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from pymongo import AsyncMongoClient, MongoClient

from benchmarks.cpu import CpuMeter
from benchmarks.cpu import describe as describe_cpu
from benchmarks.e2e import IDLE_GAP_S, idle_summary, upstream_command
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
    spaced,
    until_serving,
    watch_sidebars,
)
from benchmarks.workload import THROUGHPUT_FIRST, bench_context, bench_widgets, run_widget_code
from demo.examples import EXAMPLES, load_example
from shared.topology import EXCHANGE, SIDEBAR_READY_PREFIX, SIDEBAR_WIDGET_PREFIX

EVENTS_QUEUE = "bare.conversation-opened"
JOBS_QUEUE = "bare.widget-jobs"
CONVERSATION_ID = "conv-bench"
CUSTOMER_ID = "bench-customer"
EVENTS_PREFETCH = 128
JOBS_PREFETCH = 16
SCENARIOS = ("throughput", "idle")
STARTUP_TIMEOUT_S = 60.0
CLEANUP_GRACE_S = 60.0
PERSISTENT = aio_pika.DeliveryMode.PERSISTENT
# The product declares quorum queues (replicated); ``--queues classic`` shows what that costs.
QUEUE_ARGUMENTS: dict[str, dict[str, Any]] = {"quorum": {"x-queue-type": "quorum"}, "classic": {}}


# --- the two services ----------------------------------------------------------------------------


async def declare(channel: aio_pika.abc.AbstractChannel, name: str, queues: str) -> aio_pika.abc.AbstractQueue:
    return await channel.declare_queue(name, durable=True, arguments=QUEUE_ARGUMENTS[queues])


async def orchestrator(
    amqp_url: str, mongodb_url: str, database: str, catalog: dict[str, list[Any]], queues: str
) -> None:
    """``catalog``: each business's widgets, known at start (the product caches them)."""
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=EVENTS_PREFETCH)  # the results queue is consumed without acks
    events = await declare(channel, EVENTS_QUEUE, queues)
    await declare(channel, JOBS_QUEUE, queues)
    sidebar_exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    results = await channel.declare_queue(exclusive=True)
    db: Any = AsyncMongoClient(mongodb_url)[database]
    runs: dict[str, tuple[dict[str, Any], list[dict[str, Any]], asyncio.Future[None]]] = {}

    async def context(business_id: str, conversation_id: str) -> dict[str, Any]:
        conversation = await db.conversations.find_one({"_id": f"{business_id}:{conversation_id}"})
        assert conversation is not None
        customer = await db.customers.find_one({"_id": f"{business_id}:{conversation['customer_id']}"})
        assert customer is not None
        return {
            "conversation": conversation["context"],
            "customer": customer["context"],
            "business": {"id": business_id},
        }

    async def on_event(message: AbstractIncomingMessage) -> None:
        event = json.loads(message.body)
        business_id, event_id = event["business_id"], event["event_id"]
        run_id = f"{business_id}:{event_id}"
        widgets = catalog[business_id]
        claim = {"_id": run_id, **event, "created_at": datetime.now(UTC), "widgets": [w["widget_id"] for w in widgets]}
        _, ctx = await asyncio.gather(db.runs.insert_one(claim), context(business_id, event["conversation_id"]))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        collected: list[dict[str, Any]] = []
        runs[run_id] = (event, collected, done)
        await asyncio.gather(
            *(
                channel.default_exchange.publish(
                    aio_pika.Message(
                        json.dumps({"run_id": run_id, "widget": w, "context": ctx}).encode(),
                        delivery_mode=PERSISTENT,
                        reply_to=results.name,
                    ),
                    routing_key=JOBS_QUEUE,
                )
                for w in widgets
            )
        )
        await done
        del runs[run_id]
        sidebar = {
            "event_id": event_id,
            "trigger_event_id": event_id,
            "business_id": business_id,
            "conversation_id": event["conversation_id"],
            "generated_at": datetime.now(UTC).isoformat(),
            "widgets": sorted(collected, key=lambda w: (w["position"], w["widget_id"])),
        }
        body = json.dumps(sidebar)
        key = f"{business_id}.{event['conversation_id']}"
        # Not mandatory, as the product's: a sidebar or card nobody watches is dropped, not returned.
        await sidebar_exchange.publish(
            aio_pika.Message(body.encode(), delivery_mode=PERSISTENT),
            routing_key=f"{SIDEBAR_READY_PREFIX}.{key}",
            mandatory=False,
        )
        await asyncio.gather(
            db.run_history.insert_one({"_id": run_id, "sidebar_json": body, "created_at": claim["created_at"]}),
            db.sidebars.update_one(
                {"_id": f"{business_id}:{event['conversation_id']}"},
                {"$max": {"latest": f"{sidebar['generated_at']}\n{body}"}},
                upsert=True,
            ),
        )
        await message.ack()

    async def on_result(message: AbstractIncomingMessage) -> None:
        result = json.loads(message.body)
        run = runs.get(result["run_id"])
        if run is None:
            return
        event, collected, done = run
        collected.append(result["widget"])
        widgets = catalog[event["business_id"]]
        card = {"trigger_event_id": event["event_id"], "widget": result["widget"]}
        await sidebar_exchange.publish(
            aio_pika.Message(json.dumps(card).encode(), delivery_mode=PERSISTENT),
            routing_key=f"{SIDEBAR_WIDGET_PREFIX}.{event['business_id']}.{event['conversation_id']}",
            mandatory=False,
        )
        if len(collected) == len(widgets) and not done.done():
            done.set_result(None)

    await results.consume(on_result, no_ack=True)
    await events.consume(on_event)
    await asyncio.Future()  # until stopped


async def executor(amqp_url: str, queues: str) -> None:
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=JOBS_PREFETCH)
    jobs = await declare(channel, JOBS_QUEUE, queues)
    threads = ThreadPoolExecutor(JOBS_PREFETCH, thread_name_prefix="widget")
    loop = asyncio.get_running_loop()

    async def on_job(message: AbstractIncomingMessage) -> None:
        job = json.loads(message.body)
        widget = await loop.run_in_executor(threads, run_widget_code, job["widget"], job["context"])
        body = json.dumps({"run_id": job["run_id"], "widget": widget}).encode()
        assert message.reply_to is not None
        result = aio_pika.Message(body, delivery_mode=PERSISTENT)
        await channel.default_exchange.publish(result, routing_key=message.reply_to, mandatory=False)
        await message.ack()

    await jobs.consume(on_job)
    await asyncio.Future()  # until stopped


def serve(coroutine: Any) -> None:
    with suppress(KeyboardInterrupt):
        asyncio.run(coroutine)


# --- the run -------------------------------------------------------------------------------------


def seed(mongodb_url: str, database: str, business_ids: list[str]) -> None:
    client: MongoClient[dict[str, Any]]
    with MongoClient(mongodb_url, serverSelectionTimeoutMS=10_000) as client:
        db: Any = client[database]
        for business_id in business_ids:
            context = bench_context(business_id, CONVERSATION_ID)
            db.customers.insert_one({"_id": f"{business_id}:{CUSTOMER_ID}", "context": context["customer"]})
            db.conversations.insert_one(
                {
                    "_id": f"{business_id}:{CONVERSATION_ID}",
                    "customer_id": CUSTOMER_ID,
                    "context": context["conversation"],
                }
            )


def catalog(api_base: str, widgets: int) -> dict[str, list[dict[str, Any]]]:
    """A business with the throughput widgets, and one with the demo's four (the idle scenario's)."""
    label = secrets.token_hex(3)
    throughput = [w.message(api_base) for w in bench_widgets(widgets, THROUGHPUT_FIRST)]
    demo = [
        {"widget_id": e.widget_id, "name": e.name, "position": e.position, "code": load_example(e.widget_id, api_base)}
        for e in EXAMPLES
    ]
    return {f"bench-bare-throughput-{label}": throughput, f"bench-bare-idle-{label}": demo}


async def benchmark(args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    deadline = time.monotonic() + args.timeout
    log_dir = LOCAL_LOGS / f"bench-bare-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    mongodb_url = os.environ.get("MONGODB_URL", DEFAULT_MONGODB_URL)
    database = f"bench_bare_{stamp}_{secrets.token_hex(3)}"
    report: dict[str, Any] = {
        "benchmark": "bare_shape",
        "system": f"bare-shape-{args.queues}",
        "machine": machine_facts(),
        "config": {k: v for k, v in vars(args).items() if k != "output"},
        "scenarios": {},
    }
    async with AsyncExitStack() as stack:
        amqp_url = await stack.enter_async_context(
            isolated_vhost(os.environ.get("RABBITMQ_URL", DEFAULT_RABBITMQ_URL), f"bare-{stamp}")
        )
        stack.push_async_callback(asyncio.to_thread, drop_database, mongodb_url, database)
        env = dict(os.environ)
        upstream_port = free_port()
        upstream = await start_process("upstream", upstream_command(upstream_port, {}), env, log_dir)
        stack.push_async_callback(stop_process, upstream)
        api_base = f"http://{LOOPBACK}:{upstream_port}"
        await wait_http([f"{api_base}/healthz"], [upstream], STARTUP_TIMEOUT_S)
        businesses = catalog(api_base, args.widgets)
        await asyncio.to_thread(seed, mongodb_url, database, list(businesses))
        catalog_file = log_dir / "catalog.json"
        catalog_file.write_text(json.dumps(businesses), encoding="utf-8")
        base = [PYTHON, "benchmarks/peers/bare_shape.py"]
        services = {
            "orchestrator": [*base, "orchestrator", "--amqp", amqp_url, "--mongodb", mongodb_url,
                             "--database", database, "--catalog", str(catalog_file), "--queues", args.queues],
            "executor": [*base, "executor", "--amqp", amqp_url, "--queues", args.queues],
        }  # fmt: skip
        started = {}
        for name, command in services.items():
            started[name] = await start_process(name, command, env, log_dir)
            stack.push_async_callback(stop_process, started[name])

        amqp = await aio_pika.connect(amqp_url, timeout=30)
        stack.push_async_callback(amqp.close)
        channel = await amqp.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        await declare(channel, EVENTS_QUEUE, args.queues)

        def submitter(business_id: str) -> Submit:
            async def submit(event_id: str) -> None:
                body = {"event_id": event_id, "business_id": business_id, "conversation_id": CONVERSATION_ID}
                message = aio_pika.Message(json.dumps(body).encode(), delivery_mode=PERSISTENT, message_id=event_id)
                await channel.default_exchange.publish(message, routing_key=EVENTS_QUEUE, mandatory=True)

            return submit

        throughput_id, idle_id = businesses
        submit = submitter(throughput_id)
        watch = await watch_sidebars(channel, exchange, throughput_id, cards=False)
        for process in started.values():
            if process.proc.returncode is not None:
                raise BenchmarkError(f"the {process.name} exited:\n{process.tail()}")
        await until_serving(watch, submit, min(deadline, time.monotonic() + STARTUP_TIMEOUT_S))
        print(f"bare shape: services up, logs in {relative(log_dir)}", flush=True)
        if "throughput" in args.scenarios:
            meter = CpuMeter({**{name: [p.proc.pid] for name, p in started.items()}, "upstream": [upstream.proc.pid]})
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
        if "idle" in args.scenarios:
            submit = submitter(idle_id)
            watch = await watch_sidebars(channel, exchange, idle_id)
            await closed_loop(watch, submit, 2, 1, deadline)
            summary = idle_summary(await spaced(watch, submit, args.idle_events, IDLE_GAP_S, deadline))
            summary["config"] = {
                "events": args.idle_events,
                "gap_s": IDLE_GAP_S,
                "widgets": [e.widget_id for e in EXAMPLES],
            }
            report["scenarios"]["idle"] = summary
    report["finished_at"] = datetime.now(UTC).isoformat()
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "command", nargs="?", choices=("run", "orchestrator", "executor"), default="run", help=argparse.SUPPRESS
    )
    parser.add_argument("--scenarios", default="throughput,idle", help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--idle-events", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=10, help="events awaiting their sidebar at once")
    parser.add_argument("--widgets", type=int, default=5)
    parser.add_argument("--queues", choices=tuple(QUEUE_ARGUMENTS), default="quorum", help="the events and jobs queues")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--output", type=Path, default=None)
    for internal in ("--amqp", "--mongodb", "--database", "--catalog"):
        parser.add_argument(internal, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := set(args.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "orchestrator":
        businesses = json.loads(Path(args.catalog).read_text(encoding="utf-8"))
        serve(orchestrator(args.amqp, args.mongodb, args.database, businesses, args.queues))
        return 0
    if args.command == "executor":
        serve(executor(args.amqp, args.queues))
        return 0
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = run_report("bare_shape", lambda: benchmark(args, stamp), args.timeout + CLEANUP_GRACE_S)
    if isinstance(report, int):
        return report
    print_report(report)
    path = write_report(report, args.output or RESULTS_DIR / f"bare-shape-{args.queues}-{stamp}.json")
    print(f"results: {relative(path)}")
    return 0 if all(r["missing"] == 0 for r in report["scenarios"].values()) else 1


def print_report(report: dict[str, Any]) -> None:
    if result := report["scenarios"].get("throughput"):
        latency = result["latency_ms"]
        print(
            f"{report['system']} throughput: completed {result['completed']}/{result['submitted']}, "
            f"all ok {result['all_widgets_ok']}, p50 {latency['p50']} p99 {latency['p99']} ms, "
            f"{result['sidebars_per_s']} sidebars/s"
        )
        print(f"    CPU per sidebar: {describe_cpu(result['cpu_ms_per_sidebar'])}")
    if idle := report["scenarios"].get("idle"):
        first = idle.get("first_card_over_fastest_ms") or {}
        print(
            f"{report['system']} idle: completed {idle['completed']}/{idle['submitted']}, sidebar p50 "
            f"{idle['latency_ms']['p50']} ms; ready - slowest widget p50 {idle['ready_over_slowest_ms']['p50']} ms, "
            f"first card - fastest widget p50 {first.get('p50')} ms"
        )


if __name__ == "__main__":
    sys.exit(main())
