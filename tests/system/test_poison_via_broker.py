"""Acceptance (issue 3): the poison suite through the real broker and executor service.
All hostile jobs run side by side with healthy ones; each gets its precise status within
its timeout + 1 s, healthy results are unaffected, and the executor keeps serving."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from shared.contracts.events import EventContext
from shared.contracts.jobs import WidgetJob, WidgetResult, decode_widget_result, job_id_for
from shared.topology import INTERNAL_EXCHANGE, WIDGET_JOB_KEY
from tests.infra import Infra
from tests.poison import POISON, widget
from tests.system.harness import ServiceProcess, base_env, free_port, python_module

TIMEOUT_S = 1.5
HEALTHY = "def get_sidebar_data(context):\n    print('healthy')\n    return {'title': 'ok', 'items': []}\n"
CONTEXT = EventContext(conversation={"id": "c1"}, customer=None, business={"id": "acme"})


@pytest.fixture(scope="module")
def executor(infra: Infra) -> Iterator[ServiceProcess]:
    env = base_env(
        {**infra.env(), "EXECUTOR_CONCURRENCY": str(len(POISON) + 4), "EXECUTOR_METRICS_PORT": str(free_port())}
    )
    process = python_module("executor-poison", "executor", env).start()
    process.wait_for(lambda line: line.get("event") == "executor.started")
    yield process
    process.stop()


async def _run(infra: Infra, jobs: dict[str, str]) -> dict[str, tuple[WidgetResult, float]]:
    """Publish one job per widget id and collect each result with its time since publishing."""
    connection = await aio_pika.connect_robust(infra.rabbitmq_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(INTERNAL_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, queue.name)  # executors reply on the internal exchange, keyed by reply_to
        received: asyncio.Queue[tuple[WidgetResult, float]] = asyncio.Queue()

        async def on_message(message: AbstractIncomingMessage) -> None:
            await received.put((decode_widget_result(message.body), time.perf_counter()))

        await queue.consume(on_message, no_ack=True)
        run_id = uuid.uuid4().hex
        started = time.perf_counter()
        for widget_id, code in jobs.items():
            job = WidgetJob(
                job_id=job_id_for(run_id, widget_id),
                run_id=run_id,
                purpose="sidebar",
                business_id="acme",
                conversation_id="c1",
                widget_id=widget_id,
                widget_name=widget_id,
                code=code,
                timeout_s=TIMEOUT_S,
                context=CONTEXT,
                expires_at=datetime.now(UTC) + timedelta(seconds=60),
            )
            await exchange.publish(
                aio_pika.Message(job.model_dump_json().encode(), reply_to=queue.name), routing_key=WIDGET_JOB_KEY
            )
        results = {}
        for _ in jobs:
            result, at = await asyncio.wait_for(received.get(), 30)
            results[result.widget_id] = (result, at - started)
        return results
    finally:
        await connection.close()


async def test_poison_jobs_fail_alone_through_the_broker(infra: Infra, executor: ServiceProcess) -> None:
    names = {f"poison{n}": name for n, name in enumerate(POISON)}
    jobs = {widget_id: widget(POISON[name][0]) for widget_id, name in names.items()}
    jobs |= {f"healthy{n}": HEALTHY for n in range(4)}
    results = await _run(infra, jobs)
    for widget_id, name in names.items():
        result, took = results[widget_id]
        _, status, error_type = POISON[name]
        assert result.status == (status if status == "timeout" else "error"), (name, result.error)
        assert result.error is not None and result.error.type == error_type, (name, result.error)
        assert took < TIMEOUT_S + 1, f"{name} answered after {took:.2f} s"
    for n in range(4):
        result, took = results[f"healthy{n}"]
        assert result.status == "ok"
        assert result.logs == "healthy\n"
        assert result.duration_ms < 500, f"a healthy job took {result.duration_ms} ms beside the poison"
    again = await _run(infra, {"after": HEALTHY})
    assert again["after"][0].status == "ok", "the executor keeps serving"
