"""The executor's composition root: start the sandbox, wire broker, handler and
metrics, then run until stopped and drain."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import structlog

from executor.jobs import JobHandler
from executor.metrics import ExecutorMetrics
from executor.runner import RunRequest, WidgetRunner
from executor.settings import ExecutorSettings
from executor.zygote_runner import SandboxConfig, ZygoteRunner
from shared.broker import Broker
from shared.consumer import Consumer, ConsumerMetrics
from shared.contracts.jobs import WidgetJob, decode_widget_job
from shared.health import Health
from shared.metrics import new_registry, serve_metrics
from shared.secrets import SecretBox, parse_key
from shared.topology import WIDGET_JOBS_QUEUE

log = structlog.get_logger(__name__)

_PROBE = "def get_sidebar_data(context):\n    return {'title': 'probe', 'items': []}\n"
REPORTED_LAYERS = (
    "rlimits", "uid_per_slot", "no_new_privs", "seccomp", "landlock", "landlock_net", "landlock_scope", "thread_cap",
    "egress_guard",
)  # fmt: skip


class SandboxUnusable(RuntimeError):
    """The sandbox cannot run, or cannot isolate, widget code: the executor must not start."""


def sandbox_config(settings: ExecutorSettings) -> SandboxConfig:
    return SandboxConfig(
        memory_bytes=settings.executor_memory_limit_mb * 1024 * 1024,
        log_bytes=settings.executor_log_limit_bytes,
        result_bytes=settings.executor_result_limit_bytes,
        first_uid=settings.executor_sandbox_first_uid,
        slots=settings.executor_concurrency,
        gid=settings.executor_sandbox_gid,
        egress_allow=settings.egress_allow(),
        connect_ports=settings.egress_ports(),
        extra_ca_file=settings.executor_extra_ca_file,
        open_files=settings.executor_open_files,
        file_bytes=settings.executor_file_size_bytes,
        threads=settings.executor_threads,
        warm_workers=settings.executor_warm_workers,
        warm_max_jobs=settings.executor_warm_max_jobs,
        warm_idle_s=settings.executor_warm_idle_s,
    )


def secret_box(settings: ExecutorSettings) -> SecretBox | None:
    if settings.secrets_key is None:
        return None
    return SecretBox(parse_key(settings.secrets_key.get_secret_value()))


def check_layers(layers: dict[str, Any], allow_unsandboxed: bool) -> None:
    if not (layers.get("seccomp") or layers.get("landlock")) and not allow_unsandboxed:
        raise SandboxUnusable(
            "this kernel offers neither seccomp nor Landlock; refusing to run widget code "
            "(set EXECUTOR_ALLOW_UNSANDBOXED=true for development only)"
        )


async def probe_sandbox(runner: WidgetRunner) -> None:
    outcome = await runner.run(RunRequest(code=_PROBE, context={}, timeout_s=10.0))
    if outcome.status != "ok":
        raise SandboxUnusable(
            f"the widget sandbox cannot run a trivial widget ({outcome.error_type}: {outcome.error_message}); "
            f"as root, the sandbox uids must be able to read the Python runtime. Logs: {outcome.logs[:500]}"
        )


async def serve(settings: ExecutorSettings, stop: asyncio.Event) -> None:
    registry = new_registry()
    metrics = ExecutorMetrics(registry)
    health = Health()
    async with AsyncExitStack() as stack:
        runner = ZygoteRunner(
            sandbox_config(settings), on_retire=lambda reason: metrics.worker_retirements.labels(reason).inc()
        )
        stack.push_async_callback(runner.close)
        layers = await runner.start()
        for layer in REPORTED_LAYERS:
            metrics.isolation_layer.labels(layer).set(1 if layers.get(layer) else 0)
        log.info("sandbox.layers", **{layer: bool(layers.get(layer)) for layer in REPORTED_LAYERS})
        for layer in REPORTED_LAYERS:
            if not layers.get(layer):
                log.warning("sandbox.layer_missing", layer=layer)
        check_layers(layers, settings.executor_allow_unsandboxed)
        await probe_sandbox(runner)
        metrics_server = serve_metrics(registry, settings.metrics_host, settings.executor_metrics_port, health=health)
        stack.callback(metrics_server.close)
        broker = await Broker.connect(
            settings.rabbitmq_url.get_secret_value(),
            prefetch=settings.executor_concurrency,
            name="executor",
            connect_timeout_s=settings.broker_connect_timeout_s,
            reconnect_interval_s=settings.broker_reconnect_interval_s,
        )
        stack.push_async_callback(broker.close)
        health.require("broker", broker.is_connected)
        consumer = Consumer(
            name="widget_jobs",
            broker=broker,
            queue_name=WIDGET_JOBS_QUEUE,
            prefetch=settings.executor_concurrency,
            decode=decode_widget_job,
            handler=JobHandler(runner=runner, broker=broker, metrics=metrics, secrets=secret_box(settings)),
            log_fields=WidgetJob.log_fields,
            metrics=ConsumerMetrics(registry, "executor"),
        )
        await consumer.start()
        health.start_serving()
        log.info(
            "executor.started",
            concurrency=settings.executor_concurrency,
            metrics_port=metrics_server.port,
            memory_limit_mb=settings.executor_memory_limit_mb,
            egress_allow=list(settings.egress_allow()),
        )
        await stop.wait()
        health.stop_serving()
        log.info("executor.draining")
        await consumer.stop(settings.drain_timeout_s)
    log.info("executor.stopped")
