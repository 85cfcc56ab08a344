"""One behaviour suite for the run store, run against the MongoDB adapter on a real
MongoDB-protocol server and against the in-memory fake: every transition is atomic and idempotent."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from orchestrator.assembly import assemble_sidebar
from orchestrator.memory_runs import InMemoryRunStore
from orchestrator.mongo_runs import MongoRunStore
from orchestrator.runs import RecordedResult, Run, RunStore, WidgetSnapshot
from shared.ids import scoped_key
from shared.mongo import SIDEBARS, Document


@pytest.fixture(params=["mongo", "memory"])
def store(request: pytest.FixtureRequest, db: AsyncDatabase[Document]) -> RunStore:
    return InMemoryRunStore() if request.param == "memory" else MongoRunStore(db)


def _run(now: datetime, *, deadline_s: float = 10) -> Run:
    return Run(
        event_id=uuid.uuid4().hex,
        business_id="acme",
        conversation_id=f"c-{uuid.uuid4().hex[:8]}",
        status="collecting",
        occurred_at=now,
        received_at=now,
        deadline_at=now + timedelta(seconds=deadline_s),
        widgets=(WidgetSnapshot("a", "A", 1, 5.0), WidgetSnapshot("b", "B", 2, 5.0)),
    )


def _result(status: str = "ok", job_id: str = "j") -> RecordedResult:
    data = {"title": "A", "items": []} if status == "ok" else None
    return RecordedResult(status=status, duration_ms=5, data=data, error=None, job_id=job_id)


async def test_runs_of_different_businesses_never_collide(store: RunStore) -> None:
    run = _run(datetime.now(UTC))
    other = Run(**{**vars(run), "business_id": "globex"})
    assert await store.create(run) is True
    assert await store.create(other) is True
    assert await store.record_result(run.key, "a", _result("ok", f"{run.event_id}.a")) is True
    assert await store.record_result(other.key, "a", _result("ok", f"{run.event_id}.a")) is True
    assert await store.claim_for_assembly(run.key, datetime.now(UTC), 30) is not None
    assert await store.claim_for_assembly(other.key, datetime.now(UTC), 30) is not None


async def test_a_run_is_created_once(store: RunStore) -> None:
    run = _run(datetime.now(UTC))
    assert await store.create(run) is True
    assert await store.create(run) is False
    stored = await store.get(run.key)
    assert stored is not None
    assert stored.widgets == run.widgets
    assert stored.jobs_published is False
    await store.mark_jobs_published(run.key)
    await store.mark_jobs_published(run.key)
    published = await store.get(run.key)
    assert published is not None and published.jobs_published is True


async def test_each_job_result_is_recorded_once(store: RunStore) -> None:
    run = _run(datetime.now(UTC))
    await store.create(run)
    assert await store.record_result(run.key, "a", _result("ok", f"{run.event_id}.a")) is True
    assert await store.record_result(run.key, "a", _result("error", f"{run.event_id}.a")) is False
    partial = await store.get(run.key)
    assert partial is not None and set(partial.results) == {"a"} and not partial.complete
    assert await store.record_result(run.key, "b", _result("ok", f"{run.event_id}.b")) is True
    both = await store.get(run.key)
    assert both is not None and both.complete
    assert both.results["a"].status == "ok"


async def test_concurrent_results_are_never_lost(store: RunStore) -> None:
    widgets = tuple(WidgetSnapshot(f"w{n}", f"W{n}", n, 5.0) for n in range(12))
    run = Run(**{**vars(_run(datetime.now(UTC))), "widgets": widgets})
    await store.create(run)
    recorded = await asyncio.gather(
        *(store.record_result(run.key, w.widget_id, _result("ok", f"{run.event_id}.{w.widget_id}")) for w in widgets)
    )
    assert all(recorded)
    stored = await store.get(run.key)
    assert stored is not None and stored.complete


async def test_progress_says_when_every_widget_has_a_result(store: RunStore) -> None:
    widgets = tuple(WidgetSnapshot(f"w{n}", f"W{n}", n, 5.0) for n in range(4))
    run = Run(**{**vars(_run(datetime.now(UTC))), "widgets": widgets})
    assert await store.progress(run.key, "w0") is None, "unknown run"
    await store.create(run)
    for n in (2, 0, 3):
        await store.record_result(run.key, f"w{n}", _result("ok", f"{run.event_id}.w{n}"))
        progress = await store.progress(run.key, f"w{n}")
        assert progress is not None and not progress.complete
        assert progress.run.status == "collecting" and progress.run.widgets == widgets
        assert progress.run.results == {}
    await store.record_result(run.key, "w1", _result("error", f"{run.event_id}.w1"))
    progress = await store.progress(run.key, "w1")
    assert progress is not None and progress.complete
    claimed = await store.claim_for_assembly(run.key, datetime.now(UTC), 30)
    assert claimed is not None
    after = await store.progress(run.key, "w1")
    assert after is not None and after.run.status == "assembling"


async def test_concurrent_last_results_leave_at_least_one_seeing_the_run_complete(store: RunStore) -> None:
    widgets = tuple(WidgetSnapshot(f"w{n}", f"W{n}", n, 5.0) for n in range(6))
    run = Run(**{**vars(_run(datetime.now(UTC))), "widgets": widgets})
    await store.create(run)

    async def deliver(widget_id: str) -> bool:
        await store.record_result(run.key, widget_id, _result("ok", f"{run.event_id}.{widget_id}"))
        progress = await store.progress(run.key, widget_id)
        return progress is not None and progress.complete

    seen_complete = await asyncio.gather(*(deliver(w.widget_id) for w in widgets))
    assert any(seen_complete)


async def test_concurrent_claims_have_exactly_one_winner(store: RunStore) -> None:
    now = datetime.now(UTC)
    run = _run(now)
    await store.create(run)
    claims = await asyncio.gather(*(store.claim_for_assembly(run.key, now, 30) for _ in range(8)))
    assert sum(claim is not None for claim in claims) == 1


async def test_an_expired_claim_can_be_taken_over(store: RunStore) -> None:
    now = datetime.now(UTC)
    run = _run(now)
    await store.create(run)
    assert await store.claim_for_assembly(run.key, now, 30) is not None
    assert await store.claim_for_assembly(run.key, now + timedelta(seconds=5), 30) is None
    assert await store.claim_for_assembly(run.key, now + timedelta(seconds=31), 30) is not None
    await store.mark_published(run.key, now)
    assert await store.claim_for_assembly(run.key, now + timedelta(seconds=99), 30) is None


async def test_due_lists_unpublished_runs_past_their_deadline(store: RunStore) -> None:
    now = datetime.now(UTC)
    late, fresh, published = _run(now, deadline_s=-1), _run(now, deadline_s=60), _run(now, deadline_s=-1)
    for run in (late, fresh, published):
        await store.create(run)
    await store.mark_published(published.key, now)
    due = await store.due(now, 30, 100)
    assert late.key in due
    assert fresh.key not in due
    assert published.key not in due


async def test_the_latest_sidebar_is_never_replaced_by_an_older_one(db: AsyncDatabase[Document]) -> None:
    store = MongoRunStore(db)
    now = datetime.now(UTC)
    older, newer = _run(now), _run(now)
    newer = Run(**{**vars(newer), "conversation_id": older.conversation_id})
    for run in (older, newer):
        await store.create(run)
    await store.complete(newer.key, assemble_sidebar(newer, now + timedelta(seconds=2)))
    await store.complete(older.key, assemble_sidebar(older, now + timedelta(seconds=1)))
    latest = await db[SIDEBARS].find_one({"_id": scoped_key("acme", older.conversation_id)})
    assert latest is not None
    assert latest["trigger_event_id"] == newer.event_id
    history = await db["runs"].find_one({"_id": scoped_key("acme", older.event_id)})
    assert history is not None
    assert json.loads(history["sidebar_json"])["trigger_event_id"] == older.event_id


async def test_a_claim_whose_holder_died_before_recording_it_is_taken_over(db: AsyncDatabase[Document]) -> None:
    """The marker was inserted but the run never learned about it: once its lease ends, the next claim wins."""
    store = MongoRunStore(db)
    now = datetime.now(UTC)
    run = _run(now)
    await store.create(run)
    run_id = scoped_key(run.business_id, run.event_id)
    await db["run_markers"].insert_one({"_id": f"{run_id}:claim-1", "at": now})
    assert await store.claim_for_assembly(run.key, now + timedelta(seconds=5), 30) is None
    assert await store.claim_for_assembly(run.key, now + timedelta(seconds=31), 30) is not None
    stored = await db["runs"].find_one({"_id": run_id})
    assert stored is not None and stored["claim_attempt"] == 2
