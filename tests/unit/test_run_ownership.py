"""The orchestrator's handlers on in-memory fakes: who runs an event, when a known event
is a duplicate and when its run is taken over, and that a sidebar is recorded once."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from orchestrator.active_runs import ActiveRuns
from orchestrator.catalog import BusinessCatalog
from orchestrator.memory_runs import InMemoryRunStore
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.pipeline import Admission, DeadlinePolicy, OpenedHandler, Outbox, ResultHandler, Retry
from orchestrator.runs import Run, RunKey, WidgetDefinition, WidgetSnapshot
from shared.broker import OutgoingMessage
from shared.consumer import Delivery
from shared.contracts.events import ConversationOpened, EventContext, SidebarReady
from shared.contracts.jobs import WidgetJob, WidgetResult
from shared.contracts.widget_output import WidgetOutput
from shared.errors import PermanentError, TransientError
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
    registry: CollectorRegistry

    def events(self, outcome: str) -> float:
        return self.registry.get_sample_value("orchestrator_events_total", {"outcome": outcome}) or 0.0


def _orchestrator(
    runs: InMemoryRunStore | None = None, catalog: FixedCatalog | None = None, admission: Admission | None = None
) -> Orchestrator:
    registry = CollectorRegistry()
    metrics = OrchestratorMetrics(registry)
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
        admission=admission or Admission(),
        clock=lambda: now[0],
    )
    return Orchestrator(
        runs, publisher, opened, ResultHandler(active=active, outbox=outbox, metrics=metrics), now, registry
    )


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
    late = _orchestrator(runs, admission=Admission(max_age_s=3600))
    late.now[0] = NOW + timedelta(minutes=5)
    await _serve(late, _delivery())
    assert sorted(job.widget_id for job in late.publisher.jobs()) == ["a", "b"]
    assert len(late.publisher.sidebars()) == 1


async def test_an_event_older_than_its_deadline_span_when_taken_is_not_run_but_answered() -> None:
    orchestrator = _orchestrator()
    orchestrator.now[0] = NOW + timedelta(seconds=7.5)  # the span: largest timeout 5 s + margin 2 s
    await orchestrator.opened(_event(), _delivery())
    assert orchestrator.publisher.jobs() == []
    [sidebar] = orchestrator.publisher.sidebars()
    widgets = sidebar["widgets"]
    assert [(w["status"], w["error"]["type"], w["duration_ms"]) for w in widgets] == [("expired", "expired", 0)] * 2  # type: ignore[index,union-attr]
    assert orchestrator.runs.runs == {}, "shed without a database command"
    assert (orchestrator.events("expired"), orchestrator.events("started")) == (1, 0)
    closed = orchestrator.registry.get_sample_value("orchestrator_sidebars_published_total", {"closed_by": "expired"})
    assert closed == 1


async def test_an_event_within_its_deadline_span_runs() -> None:
    orchestrator = _orchestrator()
    orchestrator.now[0] = NOW + timedelta(seconds=6.5)
    await _serve(orchestrator, _delivery())
    [sidebar] = orchestrator.publisher.sidebars()
    assert [w["status"] for w in sidebar["widgets"]] == ["ok", "ok"]  # type: ignore[index]
    assert orchestrator.events("expired") == 0


async def test_a_configured_admission_age_replaces_the_deadline_span() -> None:
    strict = _orchestrator(admission=Admission(max_age_s=1.0))
    strict.now[0] = NOW + timedelta(seconds=1.5)
    await strict.opened(_event(), _delivery())
    assert strict.publisher.jobs() == [] and strict.events("expired") == 1
    lenient = _orchestrator(admission=Admission(max_age_s=60.0))
    lenient.now[0] = NOW + timedelta(seconds=30)
    await _serve(lenient, _delivery())
    assert lenient.events("expired") == 0 and len(lenient.publisher.jobs()) == 2


async def test_a_takeover_of_an_expired_event_publishes_expired_widgets_and_runs_nothing() -> None:
    runs = InMemoryRunStore()
    assert await runs.create(_stored_run(), "dead-replica")
    survivor = _orchestrator(runs)
    survivor.now[0] = NOW + timedelta(minutes=1)
    await survivor.opened(_event(), _delivery(redelivered=True))
    assert survivor.publisher.jobs() == []
    [sidebar] = survivor.publisher.sidebars()
    assert {w["status"] for w in sidebar["widgets"]} == {"expired"}  # type: ignore[union-attr]
    assert runs.runs[RunKey("acme", "e1")].published
    again = _orchestrator(runs)
    again.now[0] = survivor.now[0]
    await again.opened(_event(), _delivery(redelivered=True))
    assert again.publisher.published == [] and again.events("duplicate") == 1


class NoDatabase(InMemoryRunStore):
    async def create(self, run: Run, owner: str) -> bool:
        raise AssertionError("an expired first delivery inserts no run")

    async def record(self, run: Run, sidebar: SidebarReady, results: dict[str, WidgetResult]) -> None:
        raise AssertionError("an expired first delivery records nothing")


async def test_an_expired_first_delivery_costs_no_database_command() -> None:
    """Under overload the database is what runs short: shedding must not spend it."""
    orchestrator = _orchestrator(NoDatabase())
    orchestrator.now[0] = NOW + timedelta(minutes=1)
    await orchestrator.opened(_event(), _delivery())
    [sidebar] = orchestrator.publisher.sidebars()
    assert {w["status"] for w in sidebar["widgets"]} == {"expired"}  # type: ignore[union-attr]


async def test_an_expired_event_reads_no_context() -> None:
    """Expiry is decided before the context reads, so an overloaded replica sheds their cost too."""
    orchestrator = _orchestrator()
    orchestrator.now[0] = NOW + timedelta(minutes=1)
    await orchestrator.opened(_event("c404"), _delivery())  # an unknown conversation: no error
    [sidebar] = orchestrator.publisher.sidebars()
    assert {w["status"] for w in sidebar["widgets"]} == {"expired"}  # type: ignore[union-attr]


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


class SlowToRecord(InMemoryRunStore):
    """The database refuses the record a few times (busy), then takes it."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def record(self, run: Run, sidebar: SidebarReady, results: dict[str, WidgetResult]) -> None:
        if self.refusals:
            self.refusals -= 1
            raise TransientError("MongoDB was busy during record sidebar")
        await super().record(run, sidebar, results)


async def test_a_record_that_outlasts_the_publish_retries_is_retried_not_handed_back() -> None:
    """The sidebar is out: handing the event back would publish it again."""
    runs = SlowToRecord(refusals=6)
    orchestrator = _orchestrator(runs)
    quick = Retry(within_s=0.005, first_backoff_s=0.001, max_backoff_s=0.002)
    orchestrator.opened = dataclasses.replace(
        orchestrator.opened, retry=quick, record_retry=Retry(within_s=5.0, first_backoff_s=0.001, max_backoff_s=0.002)
    )
    await _serve(orchestrator, _delivery())
    assert len(orchestrator.publisher.sidebars()) == 1
    assert runs.runs[RunKey("acme", "e1")].published and runs.refusals == 0


class HeldRecord(InMemoryRunStore):
    """A record that waits until the test lets it through."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting, self.release = asyncio.Event(), asyncio.Event()

    async def record(self, run: Run, sidebar: SidebarReady, results: dict[str, WidgetResult]) -> None:
        self.waiting.set()
        await self.release.wait()
        await super().record(run, sidebar, results)


async def test_a_slow_record_does_not_hold_a_run_slot() -> None:
    """With one run slot, a second event runs while the first one's record still waits."""
    runs = HeldRecord()
    orchestrator = _orchestrator(runs)
    orchestrator.opened = dataclasses.replace(orchestrator.opened, run_slots=asyncio.Semaphore(1))
    first = asyncio.create_task(_serve(orchestrator, _delivery()))
    await runs.waiting.wait()  # the first sidebar is out; its record waits
    second = ConversationOpened(event_id="e2", business_id="acme", conversation_id="c1", occurred_at=NOW)
    orchestrator.publisher.jobs_seen.clear()
    handling = asyncio.create_task(orchestrator.opened(second, _delivery()))
    await orchestrator.publisher.jobs_seen.wait()
    assert {job.run_id for job in orchestrator.publisher.jobs()} == {"e1", "e2"}
    runs.release.set()
    for job in orchestrator.publisher.jobs():
        if job.run_id == "e2":
            await orchestrator.results(_result(job), _delivery())
    await asyncio.gather(first, handling)
    assert len(orchestrator.publisher.sidebars()) == 2 and len(runs.history) == 2
