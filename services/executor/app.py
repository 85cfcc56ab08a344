"""The executor's composition root: wire the broker, runner, handler and metrics, then run until stopped."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import structlog

from executor.jobs import JobHandler
from executor.metrics import ExecutorMetrics
from executor.runner import RunRequest
from executor.settings import ExecutorSettings
from executor.subprocess_runner import SandboxLimits, SubprocessRunner
from shared.broker import Broker
from shared.consumer import Consumer, ConsumerMetrics
from shared.contracts.jobs import WidgetJob, decode_widget_job
from shared.metrics import new_registry, serve_metrics
from shared.topology import WIDGET_JOBS_QUEUE

log = structlog.get_logger(__name__)

_PROBE = "def get_sidebar_data(context):\n    return {'title': 'probe', 'items': []}\n"


class SandboxUnusable(RuntimeError):
    """The sandbox cannot run even a trivial widget, so the executor must not start."""


def build_runner(settings: ExecutorSettings) -> SubprocessRunner:
    return SubprocessRunner(
        SandboxLimits(
            memory_bytes=settings.executor_memory_limit_mb * 1024 * 1024,
            log_bytes=settings.executor_log_limit_bytes,
            result_bytes=settings.executor_result_limit_bytes,
            first_uid=settings.executor_sandbox_first_uid,
            slots=settings.executor_concurrency,
            gid=settings.executor_sandbox_gid,
        )
    )


async def probe_sandbox(runner: SubprocessRunner) -> None:
    outcome = await runner.run(RunRequest(code=_PROBE, context={}, timeout_s=10.0))
    if outcome.status != "ok":
        raise SandboxUnusable(
            f"the widget sandbox cannot run a trivial widget ({outcome.error_type}: {outcome.error_message}); "
            f"as root, the sandbox uid must be able to read the Python runtime. Logs: {outcome.logs[:500]}"
        )


async def serve(settings: ExecutorSettings, stop: asyncio.Event) -> None:
    registry = new_registry()
    runner = build_runner(settings)
    await probe_sandbox(runner)
    async with AsyncExitStack() as stack:
        metrics_server = serve_metrics(registry, settings.metrics_host, settings.executor_metrics_port)
        stack.callback(metrics_server.close)
        broker = await Broker.connect(
            settings.rabbitmq_url.get_secret_value(),
            prefetch=settings.executor_concurrency,
            name="executor",
            connect_timeout_s=settings.broker_connect_timeout_s,
            reconnect_interval_s=settings.broker_reconnect_interval_s,
        )
        stack.push_async_callback(broker.close)
        consumer = Consumer(
            name="widget_jobs",
            broker=broker,
            queue_name=WIDGET_JOBS_QUEUE,
            decode=decode_widget_job,
            handler=JobHandler(runner=runner, broker=broker, metrics=ExecutorMetrics(registry)),
            log_fields=WidgetJob.log_fields,
            metrics=ConsumerMetrics(registry, "executor"),
        )
        await consumer.start()
        log.info(
            "executor.started",
            concurrency=settings.executor_concurrency,
            uid_per_slot=runner.isolates_by_uid,
            metrics_port=metrics_server.port,
            memory_limit_mb=settings.executor_memory_limit_mb,
        )
        await stop.wait()
        log.info("executor.draining")
        await consumer.stop(settings.drain_timeout_s)
    log.info("executor.stopped")
