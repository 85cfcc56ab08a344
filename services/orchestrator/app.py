"""The orchestrator's composition root: wire storage, broker, handlers and the
deadline scheduler, then run until stopped and drain."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from functools import partial

import structlog

from orchestrator.catalog import MongoWidgetCatalog
from orchestrator.deadlines import DeadlineScheduler
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.mongo_runs import MongoRunStore
from orchestrator.pipeline import DeadlinePolicy, Finalizer, OpenedHandler, ResultHandler
from orchestrator.settings import OrchestratorSettings
from shared.broker import Broker
from shared.consumer import Consumer, ConsumerMetrics
from shared.context import load_context
from shared.contracts.events import ConversationOpened, decode_conversation_opened
from shared.contracts.jobs import WidgetResult, decode_widget_result
from shared.metrics import new_registry, serve_metrics
from shared.mongo import connect_mongo
from shared.topology import CONVERSATION_OPENED_QUEUE, WIDGET_RESULTS_QUEUE

log = structlog.get_logger(__name__)


async def serve(settings: OrchestratorSettings, stop: asyncio.Event) -> None:
    registry = new_registry()
    metrics = OrchestratorMetrics(registry)
    consumer_metrics = ConsumerMetrics(registry, "orchestrator")
    async with AsyncExitStack() as stack:
        metrics_server = serve_metrics(registry, settings.metrics_host, settings.orchestrator_metrics_port)
        stack.callback(metrics_server.close)
        client = connect_mongo(settings.mongodb_url.get_secret_value(), app_name="orchestrator")
        stack.push_async_callback(client.close)
        db = client[settings.mongodb_database]
        runs = MongoRunStore(db)
        await runs.ensure_indexes()
        broker = await Broker.connect(
            settings.rabbitmq_url.get_secret_value(),
            prefetch=settings.orchestrator_prefetch,
            name="orchestrator",
            connect_timeout_s=settings.broker_connect_timeout_s,
            reconnect_interval_s=settings.broker_reconnect_interval_s,
        )
        stack.push_async_callback(broker.close)

        finalizer = Finalizer(runs=runs, broker=broker, metrics=metrics, lease_s=settings.assembly_lease_s)
        scheduler = DeadlineScheduler(
            runs, finalizer, sweep_interval_s=settings.sweep_interval_s, lease_s=settings.assembly_lease_s
        )
        stack.push_async_callback(scheduler.close)
        opened = Consumer(
            name="conversation_opened",
            broker=broker,
            queue_name=CONVERSATION_OPENED_QUEUE,
            decode=decode_conversation_opened,
            handler=OpenedHandler(
                runs=runs,
                catalog=MongoWidgetCatalog(db),
                load_context=partial(load_context, db),
                broker=broker,
                finalizer=finalizer,
                deadlines=DeadlinePolicy(settings.sidebar_deadline_margin_s, settings.sidebar_deadline_s),
                metrics=metrics,
                schedule=scheduler.schedule,
            ),
            log_fields=ConversationOpened.log_fields,
            metrics=consumer_metrics,
        )
        results = Consumer(
            name="widget_results",
            broker=broker,
            queue_name=WIDGET_RESULTS_QUEUE,
            decode=decode_widget_result,
            handler=ResultHandler(runs=runs, broker=broker, finalizer=finalizer, metrics=metrics),
            log_fields=WidgetResult.log_fields,
            metrics=consumer_metrics,
        )
        await opened.start()
        await results.start()
        sweeper = asyncio.create_task(scheduler.sweep_forever(stop))
        log.info("orchestrator.started", metrics_port=metrics_server.port)
        await stop.wait()
        log.info("orchestrator.draining")
        await opened.stop(settings.drain_timeout_s)
        await results.stop(settings.drain_timeout_s)
        await sweeper
    log.info("orchestrator.stopped")
