"""One behaviour suite for the run store, run against the MongoDB adapter on a real
MongoDB-protocol server and against the in-memory fake: a run is created once, and its
record marks it published, keeps its history and keeps the newest sidebar as the latest."""

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
from orchestrator.runs import Run, RunStore
from shared.contracts.jobs import WidgetResult
from shared.ids import scoped_key
from shared.latest_sidebar import latest_body
from shared.mongo import RUN_HISTORY, RUNS, SIDEBARS, Document
from tests.runs import make_result, make_run


@pytest.fixture(params=["mongo", "memory"])
def store(request: pytest.FixtureRequest, db: AsyncDatabase[Document]) -> RunStore:
    return InMemoryRunStore() if request.param == "memory" else MongoRunStore(db)


def _run(now: datetime, *, conversation_id: str | None = None, business_id: str = "acme") -> Run:
    conversation_id = conversation_id or f"c-{uuid.uuid4().hex[:8]}"
    return make_run(
        "a", "b", event_id=uuid.uuid4().hex, business_id=business_id, conversation_id=conversation_id, at=now
    )


def _result(run: Run, widget_id: str) -> WidgetResult:
    return make_result(run, widget_id, logs=f"log of {widget_id}\n")


async def test_a_run_is_created_once_and_reads_back_unpublished(store: RunStore) -> None:
    run = _run(datetime.now(UTC))
    assert await store.create(run, "replica-1") is True
    assert await store.create(run, "replica-2") is False
    stored = await store.get(run.key)
    assert stored is not None
    assert stored.published is False
    assert stored.run.widgets == run.widgets
    assert (stored.run.event_id, stored.run.conversation_id) == (run.event_id, run.conversation_id)


async def test_concurrent_creates_have_exactly_one_winner(store: RunStore) -> None:
    run = _run(datetime.now(UTC))
    outcomes = await asyncio.gather(*(store.create(run, f"replica-{n}") for n in range(5)))
    assert sorted(outcomes) == [False, False, False, False, True]


async def test_runs_of_different_businesses_never_collide(store: RunStore) -> None:
    run = _run(datetime.now(UTC))
    other = Run(**{**vars(run), "business_id": "globex"})
    assert await store.create(run, "r") is True
    assert await store.create(other, "r") is True


async def test_an_unknown_run_reads_as_none(store: RunStore) -> None:
    assert await store.get(_run(datetime.now(UTC)).key) is None


async def test_a_recorded_run_is_published_and_recording_it_again_changes_nothing(store: RunStore) -> None:
    now = datetime.now(UTC)
    run = _run(now)
    await store.create(run, "r")
    results = {"a": _result(run, "a")}
    sidebar = assemble_sidebar(run, results, now)
    await store.record(run, sidebar, results)
    await store.record(run, sidebar, results)
    stored = await store.get(run.key)
    assert stored is not None and stored.published is True


async def test_the_record_keeps_history_logs_and_the_latest_sidebar(db: AsyncDatabase[Document]) -> None:
    store = MongoRunStore(db)
    now = datetime.now(UTC)
    run = _run(now)
    await store.create(run, "replica-1")
    results = {"a": _result(run, "a"), "b": _result(run, "b")}
    sidebar = assemble_sidebar(run, results, now)
    claim_before = await db[RUNS].find_one({"_id": scoped_key("acme", run.event_id)})
    await store.record(run, sidebar, results)
    claim = await db[RUNS].find_one({"_id": scoped_key("acme", run.event_id)})
    assert claim is not None and claim["owner"] == "replica-1"
    assert claim == claim_before, "the claim is inserted once and never updated: the record is an insert"
    history = await db[RUN_HISTORY].find_one({"_id": scoped_key("acme", run.event_id)})
    assert history is not None
    assert (history["business_id"], history["conversation_id"]) == ("acme", run.conversation_id)
    assert json.loads(history["sidebar_json"]) == sidebar.model_dump(mode="json")
    assert [(r["widget_id"], r["logs"]) for r in history["results"]] == [("a", "log of a\n"), ("b", "log of b\n")]
    latest = await db[SIDEBARS].find_one({"_id": scoped_key("acme", run.conversation_id)})
    assert latest is not None and latest_body(latest) == sidebar.model_dump_json()


async def test_a_run_recorded_twice_keeps_its_first_history_entry_and_the_newest_latest(
    store: RunStore, db: AsyncDatabase[Document]
) -> None:
    """A takeover's owner that comes back late records a second sidebar of the same run: the
    history keeps the first (it is an insert), the latest sidebar the newer one."""
    now = datetime.now(UTC)
    run = _run(now)
    await store.create(run, "r")
    first, second = assemble_sidebar(run, {}, now), assemble_sidebar(run, {}, now + timedelta(seconds=1))
    await store.record(run, first, {})
    await store.record(run, second, {})
    if isinstance(store, InMemoryRunStore):
        assert store.history[run.key] == first
    else:
        entry = await db[RUN_HISTORY].find_one({"_id": scoped_key("acme", run.event_id)})
        assert entry is not None and json.loads(entry["sidebar_json"]) == first.model_dump(mode="json")
    if isinstance(store, InMemoryRunStore):
        assert store.latest[(run.business_id, run.conversation_id)] == second
    else:
        latest = await db[SIDEBARS].find_one({"_id": scoped_key("acme", run.conversation_id)})
        assert latest is not None and latest_body(latest) == second.model_dump_json()
    stored = await store.get(run.key)
    assert stored is not None and stored.published is True


async def test_the_legacy_history_index_on_runs_is_dropped(db: AsyncDatabase[Document]) -> None:
    await db[RUNS].create_index([("business_id", 1), ("conversation_id", 1), ("created_at", -1)])
    store = MongoRunStore(db)
    await store.ensure_indexes()
    await store.ensure_indexes()  # again: nothing left to drop is no error
    assert list((await db[RUNS].index_information()).keys()) == ["_id_"]
    assert "business_id_1_conversation_id_1_created_at_-1" in await db[RUN_HISTORY].index_information()


async def test_a_run_recorded_in_place_by_an_earlier_version_reads_back_published(
    db: AsyncDatabase[Document],
) -> None:
    store = MongoRunStore(db)
    run = _run(datetime.now(UTC))
    await store.create(run, "r")
    await db[RUNS].update_one({"_id": scoped_key("acme", run.event_id)}, {"$set": {"status": "published"}})
    stored = await store.get(run.key)
    assert stored is not None and stored.published is True


async def test_the_latest_sidebar_is_never_replaced_by_an_older_one(
    store: RunStore, db: AsyncDatabase[Document]
) -> None:
    now = datetime.now(UTC)
    older, newer = _run(now), _run(now, conversation_id=f"c-{uuid.uuid4().hex[:8]}")
    newer = Run(**{**vars(newer), "conversation_id": older.conversation_id})
    for run in (older, newer):
        await store.create(run, "r")
    await store.record(newer, assemble_sidebar(newer, {}, now + timedelta(seconds=1)), {})
    await store.record(older, assemble_sidebar(older, {}, now), {})
    assert await _latest_trigger(store, db, older) == newer.event_id


async def _latest_trigger(store: RunStore, db: AsyncDatabase[Document], run: Run) -> str | None:
    if isinstance(store, InMemoryRunStore):
        latest = store.latest.get((run.business_id, run.conversation_id))
        return None if latest is None else latest.trigger_event_id
    doc = await db[SIDEBARS].find_one({"_id": scoped_key(run.business_id, run.conversation_id)})
    return None if doc is None else str(json.loads(latest_body(doc))["trigger_event_id"])


async def test_two_first_sidebars_of_a_conversation_recorded_at_once_keep_the_newer(
    db: AsyncDatabase[Document],
) -> None:
    store = MongoRunStore(db)
    now = datetime.now(UTC)
    older = _run(now)
    newer = Run(**{**vars(_run(now)), "conversation_id": older.conversation_id})
    for run in (older, newer):
        await store.create(run, "r")
    await asyncio.gather(
        store.record(older, assemble_sidebar(older, {}, now), {}),
        store.record(newer, assemble_sidebar(newer, {}, now + timedelta(microseconds=1)), {}),
    )
    assert await _latest_trigger(store, db, older) == newer.event_id
