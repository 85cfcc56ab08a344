"""Run Test: one widget run through the real executor path, answered over AMQP request/reply.

The store publishes a ``widget.job`` with ``purpose="test"``, ``reply_to`` set
to this process's exclusive reply queue and ``correlation_id`` set to the job
id, then waits for the executor's ``widget.result`` with that correlation id.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError

from shared.broker import Broker, OutgoingMessage
from shared.contracts.events import EventContext
from shared.contracts.jobs import WidgetJob, WidgetResult, decode_widget_result, job_id_for
from shared.topology import INTERNAL_EXCHANGE, WIDGET_JOB_KEY
from store.errors import NoExecutorAnswer
from store.metrics import StoreMetrics
from store.repositories.secrets import SecretRepository
from store.repositories.widgets import Widget

log = structlog.get_logger(__name__)

TEST_RUN_PREFIX = "test-"


class TestRunClient:
    """Publishes test jobs and matches the replies to the callers waiting for them."""

    __test__ = False  # the name starts with "Test"; pytest must not collect it

    def __init__(
        self,
        broker: Broker,
        reply_queue: AbstractQueue,
        metrics: StoreMetrics,
        secrets: SecretRepository,
        margin_s: float,
    ) -> None:
        self._broker = broker
        self._reply_queue = reply_queue
        self._metrics = metrics
        self._secrets = secrets
        self._margin_s = margin_s
        self._pending: dict[str, asyncio.Future[WidgetResult]] = {}
        self._consumer_tag: str | None = None

    @classmethod
    async def start(
        cls, broker: Broker, metrics: StoreMetrics, secrets: SecretRepository, *, margin_s: float
    ) -> TestRunClient:
        client = cls(broker, await broker.declare_reply_queue(), metrics, secrets, margin_s)
        # Replies are consumed without acks: a reply nobody waits for any more is worthless.
        client._consumer_tag = await client._reply_queue.consume(client._on_reply, no_ack=True)
        log.info("test_runs.ready", reply_queue=client._reply_queue.name)
        return client

    async def close(self) -> None:
        if self._consumer_tag is not None:
            await self._reply_queue.cancel(self._consumer_tag)
            self._consumer_tag = None

    async def run(self, widget: Widget, conversation_id: str, context: EventContext, code: str) -> WidgetResult:
        """Run ``code`` as ``widget`` on ``context``; raises ``NoExecutorAnswer`` after timeout plus margin."""
        run_id = TEST_RUN_PREFIX + uuid.uuid4().hex
        waited_s = widget.timeout_s + self._margin_s
        job = WidgetJob(
            job_id=job_id_for(run_id, widget.widget_id),
            run_id=run_id,
            purpose="test",
            business_id=widget.business_id,
            conversation_id=conversation_id,
            widget_id=widget.widget_id,
            widget_name=widget.name,
            code=code,
            timeout_s=widget.timeout_s,
            context=context,
            expires_at=datetime.now(UTC) + timedelta(seconds=waited_s),
            # Sealed, as the orchestrator sends them, so Run Test sees the secrets a live run sees.
            secrets=await self._secrets.sealed(widget.business_id),
        )
        structlog.contextvars.bind_contextvars(run_id=run_id)
        reply: asyncio.Future[WidgetResult] = asyncio.get_running_loop().create_future()
        self._pending[job.job_id] = reply
        started = time.perf_counter()
        try:
            await self._broker.publish(INTERNAL_EXCHANGE, WIDGET_JOB_KEY, self._message(job))
            result = await asyncio.wait_for(reply, timeout=waited_s)
        except TimeoutError as exc:
            self._metrics.observe_test_run("no_answer", time.perf_counter() - started)
            raise NoExecutorAnswer(waited_s) from exc
        finally:
            self._pending.pop(job.job_id, None)
        self._metrics.observe_test_run(result.status, time.perf_counter() - started)
        structlog.contextvars.bind_contextvars(test_status=result.status)
        return result

    def _message(self, job: WidgetJob) -> OutgoingMessage:
        return OutgoingMessage(
            job.model_dump_json().encode(),
            message_type=job.type,
            message_id=job.job_id,
            correlation_id=job.job_id,
            reply_to=self._reply_queue.name,
        )

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        waiter = self._pending.get(message.correlation_id or "")
        if waiter is None:
            log.info("test_run.unmatched_reply", correlation_id=message.correlation_id)
            return
        try:
            result = decode_widget_result(message.body)
        except (ValidationError, ValueError) as exc:
            log.warning("test_run.invalid_reply", correlation_id=message.correlation_id, error=str(exc)[:500])
            return
        if result.job_id != message.correlation_id:
            log.warning("test_run.mismatched_reply", correlation_id=message.correlation_id, job_id=result.job_id)
            return
        if not waiter.done():
            waiter.set_result(result)
