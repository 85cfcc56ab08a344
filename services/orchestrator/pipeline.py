"""The orchestrator's handlers: start a run, record results, finalize a run.

All three are idempotent. Duplicate ``conversation.opened`` deliveries find the
run already created; duplicate results find the slot already filled; competing
finalizers lose the atomic claim. Only the claim winner publishes the sidebar.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from orchestrator.assembly import assemble_sidebar, widget_entry, widget_event_id
from orchestrator.catalog import WidgetCatalog
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.runs import RecordedResult, Run, RunKey, RunStore, WidgetDefinition
from shared.broker import Broker, OutgoingMessage
from shared.consumer import Delivery
from shared.contracts.events import (
    SCHEMA_VERSION,
    SIDEBAR_READY,
    SIDEBAR_WIDGET,
    ConversationOpened,
    EventContext,
    SidebarReady,
    SidebarWidgetReady,
)
from shared.contracts.jobs import WidgetJob, WidgetResult, job_id_for
from shared.errors import PermanentError, TransientError
from shared.topology import EXCHANGE, INTERNAL_EXCHANGE, WIDGET_JOB_KEY, sidebar_ready_key, sidebar_widget_key

log = structlog.get_logger(__name__)

ContextLoader = Callable[[str, str], Awaitable[EventContext | None]]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DeadlinePolicy:
    margin_s: float
    fixed_s: float | None = None

    def deadline(self, received_at: datetime, widgets: list[WidgetDefinition]) -> datetime:
        if self.fixed_s is not None:
            return received_at + timedelta(seconds=self.fixed_s)
        longest = max((w.snapshot.timeout_s for w in widgets), default=0.0)
        return received_at + timedelta(seconds=longest + self.margin_s)


@dataclass(frozen=True)
class Finalizer:
    runs: RunStore
    broker: Broker
    metrics: OrchestratorMetrics
    lease_s: float
    publish_attempts: int = 8
    clock: Clock = utc_now

    async def finalize(self, key: RunKey) -> bool:
        """Assemble, store and publish the sidebar if this caller wins the claim."""
        run = await self.runs.claim_for_assembly(key, self.clock(), self.lease_s)
        if run is None:
            return False
        sidebar = assemble_sidebar(run, self.clock())
        await self.runs.complete(key, sidebar)
        await self._publish(sidebar)
        await self.runs.mark_published(key, self.clock())
        closed_by = "complete" if run.complete else "deadline"
        self.metrics.sidebars.labels(closed_by).inc()
        self.metrics.sidebar_latency.observe(max(0.0, (self.clock() - run.occurred_at).total_seconds()))
        log.info(
            "sidebar.published",
            event_id=run.event_id,
            business_id=run.business_id,
            conversation_id=run.conversation_id,
            closed_by=closed_by,
            widgets=len(sidebar.widgets),
            statuses=sorted(w.status for w in sidebar.widgets),
        )
        return True

    async def _publish(self, sidebar: SidebarReady) -> None:
        message = OutgoingMessage(
            sidebar.model_dump_json().encode(),
            message_type=SIDEBAR_READY,
            message_id=sidebar.event_id,
            headers={"schema_version": SCHEMA_VERSION},
        )
        # The claim is ours: ride out a broker reconnect here rather than wait for the lease to
        # expire, but give up well inside the lease so no other replica takes over meanwhile.
        give_up_at = asyncio.get_running_loop().time() + self.lease_s / 2
        for attempt in range(1, self.publish_attempts + 1):
            try:
                await self.broker.publish(
                    EXCHANGE,
                    sidebar_ready_key(sidebar.business_id, sidebar.conversation_id),
                    message,
                    mandatory=False,
                )
                return
            except TransientError:
                if attempt == self.publish_attempts or asyncio.get_running_loop().time() > give_up_at:
                    raise
                await asyncio.sleep(min(0.25 * 2 ** (attempt - 1), 2.0))


@dataclass(frozen=True)
class OpenedHandler:
    runs: RunStore
    catalog: WidgetCatalog
    load_context: ContextLoader
    broker: Broker
    finalizer: Finalizer
    deadlines: DeadlinePolicy
    metrics: OrchestratorMetrics
    schedule: Callable[[Run], None]
    clock: Clock = utc_now

    async def __call__(self, event: ConversationOpened, delivery: Delivery) -> None:
        key = RunKey(event.business_id, event.event_id)
        existing = await self.runs.get(key)
        if existing is not None and existing.jobs_published:
            self.metrics.events.labels("duplicate").inc()
            return
        context = event.context or await self.load_context(event.business_id, event.conversation_id)
        if context is None:
            raise PermanentError(
                f"business {event.business_id!r} or conversation {event.conversation_id!r} is unknown "
                "and the event carries no context"
            )
        if existing is None:
            widgets = await self.catalog.active_widgets(event.business_id)
            run = self._new_run(event, widgets)
            if await self.runs.create(run):
                self.metrics.events.labels("started").inc()
            else:
                run = await self._existing(key)
                if run.jobs_published:
                    self.metrics.events.labels("duplicate").inc()
                    return
                widgets = await self._definitions(run)
        else:
            # A delivery of an event whose first handling died before publishing its jobs.
            self.metrics.events.labels("resumed").inc()
            run = existing
            widgets = await self._definitions(run)
        await self._publish_jobs(event, run, widgets, context)
        await self.runs.mark_jobs_published(key)
        if run.widgets:
            self.schedule(run)
        else:
            await self.finalizer.finalize(key)

    def _new_run(self, event: ConversationOpened, widgets: list[WidgetDefinition]) -> Run:
        received_at = self.clock()
        return Run(
            event_id=event.event_id,
            business_id=event.business_id,
            conversation_id=event.conversation_id,
            agent_id=event.agent_id,
            status="collecting",
            occurred_at=event.occurred_at,
            received_at=received_at,
            deadline_at=self.deadlines.deadline(received_at, widgets),
            widgets=tuple(w.snapshot for w in widgets),
        )

    async def _existing(self, key: RunKey) -> Run:
        run = await self.runs.get(key)
        if run is None:
            raise TransientError(f"run {key.event_id} is not readable yet after a concurrent create")
        return run

    async def _definitions(self, run: Run) -> list[WidgetDefinition]:
        found = await self.catalog.widgets_by_id(run.business_id, [w.widget_id for w in run.widgets])
        return [found[w.widget_id] for w in run.widgets if w.widget_id in found]

    async def _publish_jobs(
        self, event: ConversationOpened, run: Run, widgets: list[WidgetDefinition], context: EventContext
    ) -> None:
        secrets = await self.catalog.sealed_secrets(run.business_id) if widgets else {}
        for widget in widgets:
            snapshot = widget.snapshot
            job = WidgetJob(
                job_id=job_id_for(run.event_id, snapshot.widget_id),
                run_id=run.event_id,
                purpose="sidebar",
                business_id=run.business_id,
                conversation_id=run.conversation_id,
                widget_id=snapshot.widget_id,
                widget_name=snapshot.name,
                code=widget.code,
                timeout_s=snapshot.timeout_s,
                context=context,
                expires_at=run.deadline_at,
                secrets=secrets,
            )
            await self.broker.publish(
                INTERNAL_EXCHANGE,
                WIDGET_JOB_KEY,
                OutgoingMessage(job.model_dump_json().encode(), message_type="widget.job", message_id=job.job_id),
            )
            self.metrics.jobs.inc()


@dataclass(frozen=True)
class ResultHandler:
    runs: RunStore
    broker: Broker
    finalizer: Finalizer
    metrics: OrchestratorMetrics

    async def __call__(self, result: WidgetResult, delivery: Delivery) -> None:
        if result.purpose != "sidebar":
            raise PermanentError(f"a {result.purpose!r} result was routed to the sidebar results queue")
        recorded = RecordedResult(
            status=result.status,
            duration_ms=result.duration_ms,
            data=result.data.model_dump(mode="json") if result.data else None,
            error=result.error.model_dump() if result.error else None,
            job_id=result.job_id,
            logs=result.logs,
            logs_truncated=result.logs_truncated,
        )
        key = RunKey(result.business_id, result.run_id)
        fresh = await self.runs.record_result(key, result.widget_id, recorded)
        progress = await self.runs.progress(key, result.widget_id) if fresh else None
        if progress is None or progress.run.status != "collecting":
            self.metrics.results.labels(result.status, "ignored").inc()
            log.info("result.ignored", reason="duplicate result, or its run is unknown or already assembled")
            return
        self.metrics.results.labels(result.status, "recorded").inc()
        self.metrics.widget_duration.labels(result.status).observe(result.duration_ms / 1000)
        await self._announce(dataclasses.replace(progress.run, results={result.widget_id: recorded}), result.widget_id)
        if progress.complete:
            await self.finalizer.finalize(key)

    async def _announce(self, run: Run, widget_id: str) -> None:
        """Publish the widget's card at once, so a slow widget never holds up the others."""
        snapshot = next((w for w in run.widgets if w.widget_id == widget_id), None)
        if snapshot is None:
            return
        event = SidebarWidgetReady(
            event_id=widget_event_id(run.business_id, run.event_id, widget_id),
            business_id=run.business_id,
            conversation_id=run.conversation_id,
            trigger_event_id=run.event_id,
            widget=widget_entry(run, snapshot, utc_now()),
        )
        message = OutgoingMessage(
            event.model_dump_json().encode(),
            message_type=SIDEBAR_WIDGET,
            message_id=event.event_id,
            headers={"schema_version": SCHEMA_VERSION},
        )
        try:
            await self.broker.publish(
                EXCHANGE, sidebar_widget_key(run.business_id, run.conversation_id), message, mandatory=False
            )
        except TransientError as exc:
            # Best effort: sidebar.ready still carries this widget.
            log.warning("widget.announce_failed", error=str(exc))
