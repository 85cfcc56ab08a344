"""Executor shutdown: SIGTERM drains in-flight jobs and exits 0; SIGKILL mid-job loses
nothing, because the unacked job is redelivered to the next executor."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage

from shared.contracts.events import EventContext
from shared.contracts.jobs import WidgetJob, WidgetResult, decode_widget_result, job_id_for
from shared.topology import INTERNAL_EXCHANGE, WIDGET_JOB_KEY
from tests.infra import Infra
from tests.system.harness import ServiceProcess, base_env, free_port, python_module

SLOW = "import time\ndef get_sidebar_data(context):\n    time.sleep(1.5)\n    return {'title': 'slow', 'items': []}\n"
CONTEXT = EventContext(conversation={"id": "c1"}, customer=None, business={"id": "acme"})


class Results:
    """Widget results as the orchestrator would receive them, on a queue of the test's own."""

    def __init__(self, reply_to: str) -> None:
        self.reply_to = reply_to
        self.received: asyncio.Queue[WidgetResult] = asyncio.Queue()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        await self.received.put(decode_widget_result(message.body))

    async def take(self, count: int, within_s: float = 30) -> list[WidgetResult]:
        return [await asyncio.wait_for(self.received.get(), within_s) for _ in range(count)]


@pytest.fixture
async def broker(infra: Infra) -> AsyncIterator[tuple[aio_pika.abc.AbstractExchange, Results]]:
    connection = await aio_pika.connect_robust(infra.rabbitmq_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(INTERNAL_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, queue.name)  # executors reply on the internal exchange, keyed by reply_to
    results = Results(queue.name)
    await queue.consume(results.on_message, no_ack=True)
    yield exchange, results
    await connection.close()


def _start_executor(infra: Infra, name: str) -> tuple[ServiceProcess, int]:
    port = free_port()
    env = base_env({**infra.env(), "EXECUTOR_CONCURRENCY": "2", "EXECUTOR_METRICS_PORT": str(port)})
    process = python_module(name, "executor", env).start()
    process.wait_for(lambda line: line.get("event") == "executor.started")
    return process, port


async def _publish_jobs(exchange: aio_pika.abc.AbstractExchange, reply_to: str, count: int) -> list[str]:
    run_id = uuid.uuid4().hex
    ids = []
    for n in range(count):
        job = WidgetJob(
            job_id=job_id_for(run_id, f"w{n}"),
            run_id=run_id,
            purpose="sidebar",
            business_id="acme",
            conversation_id="c1",
            widget_id=f"w{n}",
            widget_name=f"W{n}",
            code=SLOW,
            timeout_s=10,
            context=CONTEXT,
            expires_at=datetime.now(UTC) + timedelta(seconds=60),
        )
        message = aio_pika.Message(
            job.model_dump_json().encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT, reply_to=reply_to
        )
        await exchange.publish(message, routing_key=WIDGET_JOB_KEY)
        ids.append(job.job_id)
    return ids


async def _until_in_flight(port: int, count: int) -> None:
    """Poll the executor's own metrics: it has no event to wait on from outside."""
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            line = next(line for line in text.splitlines() if line.startswith("executor_jobs_in_flight "))
            if float(line.split()[1]) >= count:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{count} jobs never ran at once")


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _zygotes_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
        if int(parent) == pid and b"executor.sandbox.zygote" in cmdline:
            found.append(int(entry.name))
    return found


async def test_sigterm_finishes_in_flight_jobs_and_exits_cleanly(
    infra: Infra, broker: tuple[aio_pika.abc.AbstractExchange, Results]
) -> None:
    exchange, results = broker
    executor, port = _start_executor(infra, "executor-sigterm")
    job_ids = await _publish_jobs(exchange, results.reply_to, 2)
    await _until_in_flight(port, 2)
    executor.send_signal(signal.SIGTERM)
    finished = await results.take(2)
    assert await asyncio.to_thread(executor.stop) == 0
    assert sorted(r.job_id for r in finished) == sorted(job_ids)
    assert all(r.status == "ok" for r in finished)
    assert any(line.get("event") == "executor.draining" for line in executor.lines)


async def test_sigkill_mid_job_loses_nothing(
    infra: Infra, broker: tuple[aio_pika.abc.AbstractExchange, Results]
) -> None:
    exchange, results = broker
    first, port = _start_executor(infra, "executor-sigkill")
    zygotes = _zygotes_of(first.pid)
    assert len(zygotes) == 1
    job_ids = await _publish_jobs(exchange, results.reply_to, 1)
    await _until_in_flight(port, 1)
    await asyncio.to_thread(first.stop, signal.SIGKILL)
    second, _ = _start_executor(infra, "executor-after-sigkill")
    try:
        [redelivered] = await results.take(1)
    finally:
        await asyncio.to_thread(second.stop)
    assert redelivered.job_id == job_ids[0]
    assert redelivered.status == "ok"
    for _ in range(100):  # the orphaned zygote notices its closed socket and exits
        if not _alive(zygotes[0]):
            break
        await asyncio.sleep(0.05)
    assert not _alive(zygotes[0]), "the zygote outlived its executor"
