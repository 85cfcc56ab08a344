"""The orchestrator's handlers on in-memory fakes: who runs an event, when a known event
is a duplicate and when its run is taken over, and that a sidebar is recorded once."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from orchestrator.active_runs import ActiveRuns
from orchestrator.catalog import BusinessCatalog
from orchestrator.memory_runs import InMemoryRunStore
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.pipeline import DeadlinePolicy, OpenedHandler, Outbox, ResultHandler, Retry
from orchestrator.runs import Run, RunKey, WidgetDefinition, WidgetSnapshot
from shared.broker import OutgoingMessage
from shared.consumer import Delivery
from shared.contracts.events import ConversationOpened, EventContext
from shared.contracts.jobs import WidgetJob, WidgetResult
from shared.contracts.widget_output import WidgetOutput
from shared.errors import PermanentError
from shared.mongo import Document
from shared.topology import WIDGET_JOB_KEY
from tests.runs import make_run

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
CONTEXT = EventContext(conversation={"id": "c1"}, customer=None, business={"id": "acme"})
WIDGETS = (
    WidgetDefinition(WidgetSnapshot("a", "A", 1, 5.0), "code a"),
    WidgetDefinition(WidgetSnapshot("b", "B", 2, 5.0), "code b"),
)


@dataclass
class RecordingPublisher:
    """The publishing port, recording what would have gone to the broker."""

    published: list[tuple[str, OutgoingMessage]] = field(default_factory=list)
    jobs_seen: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish(
        self, exchange: str, routing_key: str, message: OutgoingMessage, *, mandatory: bool = True
    ) -> None:
        self.published.append((routing_key, message))
        if routing_key == WIDGET_JOB_KEY:
            self.jobs_seen.set()

    def jobs(self) -> list[WidgetJob]:
        return [WidgetJob.model_validate_json(m.body) for key, m in self.published if key == WIDGET_JOB_KEY]

    def sidebars(self) -> list[dict[str, object]]:
        return [json.loads(m.body) for key, m in self.published if key.startswith("sidebar.ready.")]


class FixedCatalog:
    def __init__(self, widgets: tuple[WidgetDefinition, ...] = WIDGETS) -> None:
        self.widgets = widgets

    async def get(self, business_id: str) -> BusinessCatalog | None:
        business = {"business_id": business_id, "name": "Acme"}
        return BusinessCatalog(business=business, widgets=self.widgets) if business_id == "acme" else None

    def invalidate(self, business_id: str) -> None:
        pass


async def _context(business: Document, conversation_id: str) -> EventContext | None:
    return CONTEXT if conversation_id == "c1" else None


@dataclass
class Orchestrator:
    runs: InMemoryRunStore
    publisher: RecordingPublisher
    opened: OpenedHandler
    results: ResultHandler
    now: list[datetime]


def _orchestrator(runs: InMemoryRunStore | None = None, catalog: FixedCatalog | None = None) -> Orchestrator:
    metrics = OrchestratorMetrics(CollectorRegistry())
    publisher, active, now = RecordingPublisher(), ActiveRuns(), [NOW]
    outbox = Outbox(broker=publisher, results_queue="orchestrator.results.r1", metrics=metrics)
    runs = runs or InMemoryRunStore()
    opened = OpenedHandler(
        replica_id="r1",
        runs=runs,
        active=active,
        catalog=catalog or FixedCatalog(),
        load_context=_context,
        outbox=outbox,
        deadlines=DeadlinePolicy(margin_s=2.0),
        metrics=metrics,
        retry=Retry(within_s=1.0),
        clock=lambda: now[0],
    )
    return Orchestrator(runs, publisher, opened, ResultHandler(active=active, outbox=outbox, metrics=metrics), now)


def _event(conversation_id: str = "c1") -> ConversationOpened:
    return ConversationOpened(event_id="e1", business_id="acme", conversation_id=conversation_id, occurred_at=NOW)


def _delivery(redelivered: bool = False) -> Delivery:
    return Delivery(
        routing_key="conversation.opened",
        attempt=2 if redelivered else 1,
        reply_to=None,
        correlation_id=None,
        redelivered=redelivered,
    )


def _result(job: WidgetJob) -> WidgetResult:
    return WidgetResult(
        job_id=job.job_id,
        run_id=job.run_id,
        purpose="sidebar",
        business_id=job.business_id,
        conversation_id=job.conversation_id,
        widget_id=job.widget_id,
        status="ok",
        duration_ms=3,
        data=WidgetOutput(title=job.widget_name, items=[]),
        error=None,
        finished_at=NOW,
    )


async def _serve(orchestrator: Orchestrator, delivery: Delivery) -> None:
    """Handle the event while answering its jobs the way executors would."""
    handling = asyncio.create_task(orchestrator.opened(_event(), delivery))
    waiting = asyncio.create_task(orchestrator.publisher.jobs_seen.wait())
    await asyncio.wait({handling, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    for job in orchestrator.publisher.jobs():
        await orchestrator.results(_result(job), _delivery())
    await handling


async def test_the_first_delivery_runs_every_widget_replies_to_its_owner_and_records_once() -> None:
    orchestrator = _orchestrator()
    await _serve(orchestrator, _delivery())
    jobs = orchestrator.publisher.jobs()
    assert sorted(job.widget_id for job in jobs) == ["a", "b"]
    assert {m.reply_to for key, m in orchestrator.publisher.published if key == WIDGET_JOB_KEY} == {
        "orchestrator.results.r1"
    }
    [sidebar] = orchestrator.publisher.sidebars()
    assert [w["status"] for w in sidebar["widgets"]] == ["ok", "ok"]  # type: ignore[index]
    assert orchestrator.runs.runs[RunKey("acme", "e1")].published
    assert orchestrator.runs.owners[RunKey("acme", "e1")] == "r1"


async def test_cards_are_published_before_the_sidebar() -> None:
    orchestrator = _orchestrator()
    await _serve(orchestrator, _delivery())
    keys = [key.split(".")[1] for key, _ in orchestrator.publisher.published if key.startswith("sidebar.")]
    assert keys == ["widget", "widget", "ready"]


async def test_a_first_delivery_of_a_running_or_published_event_is_a_duplicate() -> None:
    runs = InMemoryRunStore()
    await _serve(_orchestrator(runs), _delivery())
    again = _orchestrator(runs)
    await again.opened(_event(), _delivery())
    assert again.publisher.published == []


async def test_a_redelivered_event_of_an_unpublished_run_is_taken_over_and_rerun() -> None:
    runs = InMemoryRunStore()
    assert await runs.create(_stored_run(), "dead-replica")
    survivor = _orchestrator(runs)
    await _serve(survivor, _delivery(redelivered=True))
    assert sorted(job.widget_id for job in survivor.publisher.jobs()) == ["a", "b"]
    assert len(survivor.publisher.sidebars()) == 1
    assert runs.runs[RunKey("acme", "e1")].published


async def test_a_redelivered_event_of_a_published_run_publishes_nothing() -> None:
    runs = InMemoryRunStore()
    await _serve(_orchestrator(runs), _delivery())
    again = _orchestrator(runs)
    await again.opened(_event(), _delivery(redelivered=True))
    assert again.publisher.published == []


async def test_a_first_delivery_of_a_run_orphaned_long_ago_is_taken_over() -> None:
    """A dead-lettered event replayed later: no owner can still be working on its run."""
    runs = InMemoryRunStore()
    assert await runs.create(_stored_run(), "dead-replica")
    late = _orchestrator(runs)
    late.now[0] = NOW + timedelta(minutes=5)
    await _serve(late, _delivery())
    assert len(late.publisher.sidebars()) == 1


async def test_a_takeover_leaves_out_widgets_deactivated_since() -> None:
    runs = InMemoryRunStore()
    assert await runs.create(_stored_run(), "dead-replica")
    survivor = _orchestrator(runs, FixedCatalog(WIDGETS[:1]))
    await _serve(survivor, _delivery(redelivered=True))
    [sidebar] = survivor.publisher.sidebars()
    assert [w["widget_id"] for w in sidebar["widgets"]] == ["a"]  # type: ignore[index]


async def test_unknown_businesses_and_conversations_are_permanent_errors() -> None:
    orchestrator = _orchestrator()
    unknown_business = ConversationOpened(event_id="e2", business_id="nobody", conversation_id="c1", occurred_at=NOW)
    with pytest.raises(PermanentError, match="business 'nobody' is unknown"):
        await orchestrator.opened(unknown_business, _delivery())
    with pytest.raises(PermanentError, match="conversation 'c404'"):
        await orchestrator.opened(_event("c404"), _delivery())
    assert orchestrator.publisher.published == []


def _stored_run() -> Run:
    """The run a replica that has since died inserted for the event."""
    return make_run("a", "b", event_id="e1", at=NOW, deadline_s=7)
