"""The orchestrator's handlers: events in, jobs out, results in, cards and sidebars out.

The replica that inserts a run owns it for as long as it holds the event's
delivery: it publishes the jobs with its private results queue as ``reply_to``,
collects the results in memory, publishes each card as it arrives, and at
completion or deadline publishes ``sidebar.ready`` and records it. Only then is
the event acked. If the owner dies, RabbitMQ redelivers the event; whoever gets
it finds the run unpublished and takes it over, re-running its jobs.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol

import structlog

from orchestrator.active_runs import ActiveRun, ActiveRuns, RunAbandoned
from orchestrator.assembly import assemble_sidebar, widget_entry, widget_event_id
from orchestrator.catalog import BusinessCatalog
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.runs import Run, RunKey, RunStore, WidgetDefinition, WidgetSnapshot
from shared.broker import OutgoingMessage, Publisher
from shared.consumer import Delivery
from shared.contracts.catalog import CatalogChanged
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
from shared.mongo import Document
from shared.topology import EXCHANGE, INTERNAL_EXCHANGE, WIDGET_JOB_KEY, sidebar_ready_key, sidebar_widget_key

log = structlog.get_logger(__name__)

ContextLoader = Callable[[Document, str], Awaitable[EventContext | None]]
Recording = Callable[[], Awaitable[None]]
"""The record of a published sidebar, still to be made (``RunStore.record`` with its arguments)."""
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Catalog(Protocol):
    async def get(self, business_id: str) -> BusinessCatalog | None: ...

    def invalidate(self, business_id: str) -> None: ...


@dataclass(frozen=True)
class DeadlinePolicy:
    margin_s: float
    fixed_s: float | None = None

    def deadline(self, received_at: datetime, widgets: tuple[WidgetSnapshot, ...]) -> datetime:
        if self.fixed_s is not None:
            return received_at + timedelta(seconds=self.fixed_s)
        longest = max((w.timeout_s for w in widgets), default=0.0)
        return received_at + timedelta(seconds=longest + self.margin_s)


@dataclass(frozen=True)
class Admission:
    """Whether an event is still worth running when it is taken.

    A sidebar for a conversation opened minutes ago is worthless, and computing it
    would delay the fresh ones behind it: an event older than ``max_age_s`` (by default,
    its sidebar's own deadline span) when taken is not run. It gets a sidebar whose
    widgets are all ``expired``, so the frontend hears of it, and nothing is lost.
    """

    max_age_s: float | None = None

    def age_s(self, event: ConversationOpened, run: Run) -> float | None:
        """The event's age when taken if it is past the limit, else None."""
        age_s = (run.received_at - event.occurred_at).total_seconds()
        limit_s = self.max_age_s if self.max_age_s is not None else (run.deadline_at - run.received_at).total_seconds()
        return age_s if age_s > limit_s else None


@dataclass(frozen=True)
class Retry:
    """Bounded retries of one idempotent step that must not be given up lightly."""

    within_s: float
    first_backoff_s: float = 0.1
    max_backoff_s: float = 2.0

    async def run(self, step: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.within_s
        backoff = self.first_backoff_s
        while True:
            try:
                await step()
                return
            except TransientError as exc:
                if isinstance(exc, RunAbandoned) or loop.time() + backoff > give_up_at:
                    raise
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)


async def _nothing() -> None:
    return None


def _event_message(body: str, message_type: str, event_id: str) -> OutgoingMessage:
    return OutgoingMessage(
        body.encode(), message_type=message_type, message_id=event_id, headers={"schema_version": SCHEMA_VERSION}
    )


@dataclass(frozen=True)
class Outbox:
    """What the orchestrator publishes: jobs, cards and sidebars."""

    broker: Publisher
    results_queue: str
    metrics: OrchestratorMetrics

    async def jobs(self, jobs: list[WidgetJob]) -> None:
        """Publish a run's jobs together and wait for all their confirms."""
        await asyncio.gather(*(self._job(job) for job in jobs))
        self.metrics.jobs.inc(len(jobs))

    async def _job(self, job: WidgetJob) -> None:
        message = OutgoingMessage(
            job.model_dump_json().encode(),
            message_type="widget.job",
            message_id=job.job_id,
            reply_to=self.results_queue,
        )
        await self.broker.publish(INTERNAL_EXCHANGE, WIDGET_JOB_KEY, message)

    async def card(self, run: Run, widget: WidgetSnapshot, result: WidgetResult) -> None:
        """Best effort: sidebar.ready carries every card again."""
        event = SidebarWidgetReady(
            event_id=widget_event_id(run.business_id, run.event_id, widget.widget_id),
            business_id=run.business_id,
            conversation_id=run.conversation_id,
            trigger_event_id=run.event_id,
            widget=widget_entry(run, widget, result, utc_now()),
        )
        key = sidebar_widget_key(run.business_id, run.conversation_id)
        try:
            message = _event_message(event.model_dump_json(), SIDEBAR_WIDGET, event.event_id)
            await self.broker.publish(EXCHANGE, key, message, mandatory=False)
        except TransientError as exc:
            log.warning("widget.announce_failed", error=str(exc))

    async def sidebar(self, sidebar: SidebarReady) -> None:
        key = sidebar_ready_key(sidebar.business_id, sidebar.conversation_id)
        message = _event_message(sidebar.model_dump_json(), SIDEBAR_READY, sidebar.event_id)
        await self.broker.publish(EXCHANGE, key, message, mandatory=False)


@dataclass(frozen=True)
class OpenedHandler:
    replica_id: str
    runs: RunStore
    active: ActiveRuns
    catalog: Catalog
    load_context: ContextLoader
    outbox: Outbox
    deadlines: DeadlinePolicy
    metrics: OrchestratorMetrics
    retry: Retry
    admission: Admission = Admission()
    record_retry: Retry = Retry(within_s=120.0)
    # Runs between taking their event and publishing their sidebar, at once. Recording is
    # left out: a slow database must not hold back new runs (nor, with them, the intake).
    run_slots: asyncio.Semaphore = dataclasses.field(default_factory=lambda: asyncio.Semaphore(32))
    clock: Clock = utc_now

    async def __call__(self, event: ConversationOpened, delivery: Delivery) -> None:
        key = RunKey(event.business_id, event.event_id)
        if not delivery.redelivered and self.active.get(key) is not None:
            self._duplicate()
            return
        async with self.run_slots:
            recording = await self._take(event, delivery)
        if recording is not None:
            # Between the publish and this record lies the one window in which a crash
            # publishes the sidebar twice: the redelivered event finds the run unpublished.
            # The sidebar is out, so the record may take its time: it is retried for longer
            # than the publish, holding the event, rather than handing the event back.
            await self.record_retry.run(recording)

    async def _take(self, event: ConversationOpened, delivery: Delivery) -> Recording | None:
        """Run the event (or shed it, or find it a duplicate); what is left to record, if anything."""
        key = RunKey(event.business_id, event.event_id)
        catalog = await self.catalog.get(event.business_id)
        if catalog is None:
            raise PermanentError(f"business {event.business_id!r} is unknown")
        run = self._new_run(event, tuple(w.snapshot for w in catalog.widgets))
        # Ages only grow, so an event expired now is expired at a takeover too.
        expired_age_s = self.admission.age_s(event, run)
        if expired_age_s is not None and not delivery.redelivered:
            # Shed without a database command: under overload the database is what runs short.
            # (A redelivered event may have a run, published or not: it takes the path below.)
            await self._expire(run, expired_age_s, delivery)  # and no record: no run was inserted
            return None
        context_read = self._context(event, catalog) if expired_age_s is None else _nothing()
        created, context = await asyncio.gather(self.runs.create(run, self.replica_id), context_read)
        widgets = list(catalog.widgets)
        if created and expired_age_s is None:
            self.metrics.events.labels("started").inc()
            log.info("run.started", widgets=len(widgets))
        elif not created:
            stored = await self.runs.get(key)
            if stored is None:
                raise TransientError(f"run {event.event_id} is not readable yet after a concurrent create")
            # A first delivery of a known event is a duplicate: the run's owner holds the original
            # delivery, and if it dies, that delivery comes back marked redelivered. Unless the run
            # was orphaned long ago (a dead-lettered event replayed, say): no owner is that late.
            if stored.published or not (delivery.redelivered or self._orphaned(stored.run)):
                self._duplicate()
                return None
            run, widgets = self._takeover(stored.run, catalog)
            self.metrics.events.labels("taken_over").inc()
            log.info("run.taken_over", attempt=run.attempt, widgets=len(widgets))
        if expired_age_s is not None:
            return await self._expire(run, expired_age_s, delivery)
        if context is None:
            raise PermanentError(
                f"conversation {event.conversation_id!r} of business {event.business_id!r} is unknown "
                "and the event carries no context"
            )
        return await self._run(run, widgets, context, catalog.sealed_secrets, delivery)

    async def _run(
        self,
        run: Run,
        widgets: list[WidgetDefinition],
        context: EventContext,
        secrets: dict[str, str],
        delivery: Delivery,
    ) -> Recording:
        active = self.active.start(run, delivery.held)
        self.metrics.runs_in_flight.inc()
        try:
            await self.outbox.jobs([self._job(run, widget, context, secrets) for widget in widgets])
            await active.wait((run.deadline_at - self.clock()).total_seconds())
            return await self._close(active)
        finally:
            self.active.finish(active)
            self.metrics.runs_in_flight.dec()

    async def _expire(self, run: Run, age_s: float, delivery: Delivery) -> Recording:
        """Not run: a sidebar of ``expired`` widgets is published instead."""
        self.metrics.events.labels("expired").inc()
        log.warning("event.expired", age_s=round(age_s, 3), widgets=len(run.widgets))
        active = self.active.start(run, delivery.held)
        try:
            return await self._close(active, expired=True)
        finally:
            self.active.finish(active)

    async def _close(self, active: ActiveRun, *, expired: bool = False) -> Recording:
        """Publish the run's sidebar; the record that follows is the caller's, outside its run slot."""
        run, results = active.run, dict(active.results)
        sidebar = assemble_sidebar(run, results, self.clock(), "expired" if expired else "timeout")

        async def publish() -> None:
            active.check()  # once abandoned, the sidebar is its new owner's to publish
            await self.outbox.sidebar(sidebar)

        await self.retry.run(publish)
        closed_by = "expired" if expired else "complete" if active.complete else "deadline"
        log.info(
            "sidebar.published",
            closed_by=closed_by,
            widgets=len(sidebar.widgets),
            statuses=sorted(w.status for w in sidebar.widgets),
        )
        self.metrics.sidebars.labels(closed_by).inc()
        if not expired:  # the latency of the sidebars served; expired ones are counted apart
            self.metrics.sidebar_latency.observe(max(0.0, (self.clock() - run.occurred_at).total_seconds()))
        return partial(self.runs.record, run, sidebar, results)

    async def _context(self, event: ConversationOpened, catalog: BusinessCatalog) -> EventContext | None:
        if event.context is not None:
            return event.context
        return await self.load_context(catalog.business, event.conversation_id)

    def _duplicate(self) -> None:
        self.metrics.events.labels("duplicate").inc()
        log.info("event.duplicate")

    def _new_run(self, event: ConversationOpened, widgets: tuple[WidgetSnapshot, ...]) -> Run:
        received_at = self.clock()
        return Run(
            event_id=event.event_id,
            business_id=event.business_id,
            conversation_id=event.conversation_id,
            agent_id=event.agent_id,
            occurred_at=event.occurred_at,
            received_at=received_at,
            deadline_at=self.deadlines.deadline(received_at, widgets),
            widgets=widgets,
        )

    def _orphaned(self, run: Run) -> bool:
        """Past the latest moment its owner could still publish and record it."""
        return self.clock() > run.deadline_at + timedelta(seconds=self.retry.within_s + self.record_retry.within_s)

    def _takeover(self, run: Run, catalog: BusinessCatalog) -> tuple[Run, list[WidgetDefinition]]:
        """Its results died with its owner: run the jobs again, against a fresh deadline.
        Widgets deactivated since the run began are left out."""
        widgets = catalog.definitions(run.widgets)
        snapshots = tuple(w.snapshot for w in widgets)
        received_at = self.clock()
        taken = dataclasses.replace(
            run,
            widgets=snapshots,
            received_at=received_at,
            deadline_at=self.deadlines.deadline(received_at, snapshots),
            attempt=run.attempt + 1,
        )
        return taken, widgets

    @staticmethod
    def _job(run: Run, widget: WidgetDefinition, context: EventContext, secrets: dict[str, str]) -> WidgetJob:
        return WidgetJob(
            job_id=job_id_for(run.event_id, widget.snapshot.widget_id),
            run_id=run.event_id,
            purpose="sidebar",
            business_id=run.business_id,
            conversation_id=run.conversation_id,
            widget_id=widget.snapshot.widget_id,
            widget_name=widget.snapshot.name,
            code=widget.code,
            timeout_s=widget.snapshot.timeout_s,
            context=context,
            expires_at=run.deadline_at,
            secrets=secrets,
        )


@dataclass(frozen=True)
class ResultHandler:
    active: ActiveRuns
    outbox: Outbox
    metrics: OrchestratorMetrics

    async def __call__(self, result: WidgetResult, delivery: Delivery) -> None:
        if result.purpose != "sidebar":
            raise PermanentError(f"a {result.purpose!r} result was routed to an orchestrator")
        active = self.active.get(RunKey(result.business_id, result.run_id))
        widget = active.add(result) if active is not None else None
        if active is None or widget is None:
            self.metrics.results.labels(result.status, "ignored").inc()
            log.info("result.ignored", reason="duplicate or late result, or its run is not owned here")
            return
        self.metrics.results.labels(result.status, "collected").inc()
        self.metrics.widget_duration.labels(result.status).observe(result.duration_ms / 1000)
        try:
            await self.outbox.card(active.run, widget, result)
        finally:
            active.announced()
        if len(active.results) == 1:
            self.metrics.first_card.observe(max(0.0, (utc_now() - active.run.occurred_at).total_seconds()))


@dataclass(frozen=True)
class CatalogHandler:
    catalog: Catalog

    async def __call__(self, notice: CatalogChanged, delivery: Delivery) -> None:
        self.catalog.invalidate(notice.business_id)
        log.info("catalog.invalidated", what=notice.what)
