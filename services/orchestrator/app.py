"""The orchestrator's composition root: wire storage, catalog, broker and handlers,
then run until stopped and drain."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import structlog

from orchestrator.active_runs import ActiveRuns
from orchestrator.catalog import CachedCatalog, MongoCatalog
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.mongo_runs import MongoRunStore
from orchestrator.pipeline import (
    Admission,
    CatalogHandler,
    DeadlinePolicy,
    OpenedHandler,
    Outbox,
    ResultHandler,
    Retry,
)
from orchestrator.settings import OrchestratorSettings
from shared.broker import Broker, QueueBinding
from shared.consumer import Consumer, ConsumerMetrics
from shared.context import load_conversation_context
from shared.contracts.catalog import CatalogChanged, decode_catalog_changed
from shared.contracts.events import ConversationOpened, decode_conversation_opened
from shared.contracts.jobs import WidgetResult, decode_widget_result
from shared.health import Health, mongo_reachable
from shared.metrics import new_registry, serve_metrics
from shared.mongo import CommandCounter, connect_mongo
from shared.topology import (
    CATALOG_CHANGED_KEY,
    CONVERSATION_OPENED_QUEUE,
    INTERNAL_EXCHANGE,
    replica_catalog_queue,
    replica_results_queue,
)

log = structlog.get_logger(__name__)


async def serve(settings: OrchestratorSettings, stop: asyncio.Event) -> None:
    replica_id = uuid.uuid4().hex[:12]
    structlog.contextvars.bind_contextvars(replica_id=replica_id)
    registry = new_registry()
    metrics = OrchestratorMetrics(registry)
    consumer_metrics = ConsumerMetrics(registry, "orchestrator")
    health = Health()
    async with AsyncExitStack() as stack:
        metrics_server = serve_metrics(
            registry, settings.metrics_host, settings.orchestrator_metrics_port, health=health
        )
        stack.callback(metrics_server.close)
        client = connect_mongo(
            settings.mongodb_url.get_secret_value(),
            app_name="orchestrator",
            commands=CommandCounter(registry, "orchestrator"),
        )
        stack.push_async_callback(client.close)
        health.require("mongodb", mongo_reachable(client))
        db = client[settings.mongodb_database]
        runs = MongoRunStore(db)
        await runs.ensure_indexes()
        broker = await Broker.connect(
            settings.rabbitmq_url.get_secret_value(),
            prefetch=1,
            name=f"orchestrator-{replica_id}",
            connect_timeout_s=settings.broker_connect_timeout_s,
            reconnect_interval_s=settings.broker_reconnect_interval_s,
        )
        stack.push_async_callback(broker.close)
        health.require("broker", broker.is_connected)

        catalog = CachedCatalog(MongoCatalog(db), ttl_s=settings.catalog_ttl_s)
        active = ActiveRuns()
        results_queue = replica_results_queue(replica_id)
        outbox = Outbox(broker=broker, results_queue=results_queue, metrics=metrics)

        def on_reconnect() -> None:
            # Deliveries held before the drop are requeued by RabbitMQ, and catalog
            # notices sent meanwhile were missed.
            abandoned = active.abandon_unheld()
            catalog.clear()
            metrics.runs_abandoned.inc(abandoned)
            log.warning("runs.abandoned", runs=abandoned, reason="broker connection lost")

        broker.on_reconnect(on_reconnect)
        consumers: list[Consumer[Any]] = [
            Consumer(
                name="widget_results",
                broker=broker,
                queue_name=results_queue,
                private=QueueBinding(INTERNAL_EXCHANGE, results_queue),
                decode=decode_widget_result,
                handler=ResultHandler(active=active, outbox=outbox, metrics=metrics),
                log_fields=WidgetResult.log_fields,
                metrics=consumer_metrics,
            ),
            Consumer(
                name="catalog_changes",
                broker=broker,
                queue_name=replica_catalog_queue(replica_id),
                private=QueueBinding(INTERNAL_EXCHANGE, CATALOG_CHANGED_KEY),
                decode=decode_catalog_changed,
                handler=CatalogHandler(catalog),
                log_fields=CatalogChanged.log_fields,
                metrics=consumer_metrics,
            ),
            Consumer(
                name="conversation_opened",
                broker=broker,
                queue_name=CONVERSATION_OPENED_QUEUE,
                prefetch=settings.orchestrator_prefetch,
                decode=decode_conversation_opened,
                handler=OpenedHandler(
                    replica_id=replica_id,
                    runs=runs,
                    active=active,
                    catalog=catalog,
                    load_context=partial(load_conversation_context, db),
                    outbox=outbox,
                    deadlines=DeadlinePolicy(settings.sidebar_deadline_margin_s, settings.sidebar_deadline_s),
                    metrics=metrics,
                    retry=Retry(within_s=settings.sidebar_retry_s),
                    admission=Admission(settings.admission_max_age_s),
                    record_retry=Retry(within_s=settings.sidebar_record_retry_s),
                    run_slots=asyncio.Semaphore(settings.orchestrator_max_runs),
                ),
                log_fields=ConversationOpened.log_fields,
                metrics=consumer_metrics,
            ),
        ]
        for consumer in consumers:
            await consumer.start()
        health.start_serving()
        log.info("orchestrator.started", metrics_port=metrics_server.port, results_queue=results_queue)
        await stop.wait()
        health.stop_serving()
        log.info("orchestrator.draining", runs_in_flight=len(active))
        # Events first: their runs still need their results, which keep coming until they close.
        events, *private = reversed(consumers)
        await events.stop(settings.drain_timeout_s)
        # Runs still open have had their events requeued: they are another replica's now.
        metrics.runs_abandoned.inc(active.abandon_all())
        for consumer in private:
            await consumer.stop(settings.drain_timeout_s)
    log.info("orchestrator.stopped")
