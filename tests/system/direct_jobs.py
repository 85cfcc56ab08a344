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

CONTEXT = EventContext(conversation={"id": "c1"}, customer=None, business={"id": "acme"})


async def run_jobs(
    infra: Infra, jobs: dict[str, str], *, timeout_s: float, wait_s: float = 60
) -> dict[str, tuple[WidgetResult, float]]:
    """Publish one job per widget id; each result, by widget id, with its time since publishing."""
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
                expires_at=datetime.now(UTC) + timedelta(seconds=60),
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
