"""Widget jobs published straight to the executors, as an orchestrator would, with the
results collected on a reply queue of the test's own."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from shared.contracts.events import EventContext
from shared.contracts.jobs import WidgetJob, WidgetResult, decode_widget_result, job_id_for
from shared.topology import INTERNAL_EXCHANGE, WIDGET_JOB_KEY
from tests.infra import Infra
from tests.poison import POISON, widget

CONTEXT = EventContext(conversation={"id": "c1"}, customer=None, business={"id": "acme"})


async def run_jobs(
    infra: Infra, jobs: dict[str, str], *, timeout_s: float, wait_s: float = 60, expires_in_s: float = 60
) -> dict[str, tuple[WidgetResult, float]]:
    """Publish one job per widget id, expiring ``expires_in_s`` from now; each result, by
    widget id, with its time since publishing."""
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
                timeout_s=timeout_s,
                context=CONTEXT,
                expires_at=datetime.now(UTC) + timedelta(seconds=expires_in_s),
            )
            message = aio_pika.Message(job.model_dump_json().encode(), reply_to=queue.name)
            await exchange.publish(message, routing_key=WIDGET_JOB_KEY)
        results = {}
        for _ in jobs:
            result, at = await asyncio.wait_for(received.get(), wait_s)
            results[result.widget_id] = (result, at - started)
        return results
    finally:
        await connection.close()


HEALTHY = "def get_sidebar_data(context):\n    print('healthy')\n    return {'title': 'ok', 'items': []}\n"
POISON_IDS = {f"poison{n}": name for n, name in enumerate(POISON)}


def poison_suite() -> dict[str, str]:
    """Every poison widget of the catalogue and four healthy ones, by widget id."""
    jobs = {widget_id: widget(POISON[name][0]) for widget_id, name in POISON_IDS.items()}
    return jobs | {f"healthy{n}": HEALTHY for n in range(4)}


def check_poison_suite(results: dict[str, tuple[WidgetResult, float]], timeout_s: float) -> None:
    """Each poison job has its precise status within its timeout + 1 s; healthy ones are unaffected."""
    for widget_id, name in POISON_IDS.items():
        result, took = results[widget_id]
        _, status, error_type = POISON[name]
        assert result.status == (status if status == "timeout" else "error"), (name, result.error)
        assert result.error is not None and result.error.type == error_type, (name, result.error)
        assert took < timeout_s + 1, f"{name} answered after {took:.2f} s"
    for n in range(4):
        result, _ = results[f"healthy{n}"]
        assert result.status == "ok", result.error
        assert result.logs == "healthy\n"
