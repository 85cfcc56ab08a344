"""The MongoDB adapter of the run store.

Collections: ``runs`` (one per event, inserted when the event arrives: the claim
that decides who runs it, never updated), ``run_history`` (one per published run,
inserted with its sidebar and its widgets' logs: shared/run_history.py) and
``sidebars`` (the latest per conversation: shared/latest_sidebar.py). Every id is
prefixed by the business id, and every command addresses one document by ``_id``
(see shared/mongo.py for why). A sidebar costs three commands: the claim, then the
history insert and the latest sidebar's upsert, sent together.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from orchestrator.runs import Run, RunKey, StoredRun, WidgetSnapshot
from shared.contracts.events import SidebarReady
from shared.contracts.jobs import WidgetResult
from shared.ids import scoped_key
from shared.latest_sidebar import latest_update
from shared.mongo import RUN_HISTORY, RUNS, SIDEBARS, Document, mongo_errors
from shared.run_history import INDEX, history_document


def _run_id(key: RunKey) -> str:
    return scoped_key(key.business_id, key.event_id)


def _to_document(run: Run, owner: str) -> Document:
    return {
        "_id": _run_id(run.key),
        "event_id": run.event_id,
        "business_id": run.business_id,
        "conversation_id": run.conversation_id,
        "agent_id": run.agent_id,
        "owner": owner,
        "occurred_at": run.occurred_at,
        "created_at": run.received_at,
        "deadline_at": run.deadline_at,
        "widgets": [
            {"widget_id": w.widget_id, "name": w.name, "position": w.position, "timeout_s": w.timeout_s}
            for w in run.widgets
        ],
    }


def _from_document(doc: Document, *, recorded: bool) -> StoredRun:
    run = Run(
        event_id=doc["event_id"],
        business_id=doc["business_id"],
        conversation_id=doc["conversation_id"],
        agent_id=doc.get("agent_id"),
        occurred_at=doc["occurred_at"],
        received_at=doc["created_at"],
        deadline_at=doc["deadline_at"],
        widgets=tuple(WidgetSnapshot(**w) for w in doc["widgets"]),
        attempt=int(doc.get("attempt") or 1),
    )
    # Runs recorded before run_history existed were marked in place.
    return StoredRun(run, published=recorded or doc.get("status") == "published")


class MongoRunStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._runs = db[RUNS]
        self._history = db[RUN_HISTORY]
        self._sidebars = db[SIDEBARS]

    async def create(self, run: Run, owner: str) -> bool:
        with mongo_errors("create run"):
            try:
                await self._runs.insert_one(_to_document(run, owner))
            except DuplicateKeyError:
                return False
        return True

    async def get(self, key: RunKey) -> StoredRun | None:
        """The claim, and whether the run's history entry exists: two reads by ``_id``, off the
        hot path (only a duplicate or redelivered event reads its run back)."""
        with mongo_errors("read run"):
            doc, recorded = await asyncio.gather(
                self._runs.find_one({"_id": _run_id(key)}, {"sidebar_json": 0, "results": 0}),
                self._history.find_one({"_id": _run_id(key)}, {"_id": 1}),
            )
        return None if doc is None else _from_document(doc, recorded=recorded is not None)

    async def record(self, run: Run, sidebar: SidebarReady, results: dict[str, WidgetResult]) -> None:
        body = sidebar.model_dump_json()  # text: widget field names may hold "." or "$"
        entry = history_document(
            run_id=_run_id(run.key),
            event_id=run.event_id,
            business_id=run.business_id,
            conversation_id=run.conversation_id,
            created_at=run.received_at,
            published_at=datetime.now(UTC),
            attempt=run.attempt,
            sidebar_json=body,
            results=[results[w.widget_id] for w in run.widgets if w.widget_id in results],
        )
        with mongo_errors("record sidebar"):
            await asyncio.gather(self._insert_history(entry), self._replace_latest(sidebar, body))

    async def _insert_history(self, entry: Document) -> None:
        # A duplicate is a run recorded already: a retry after a lost answer, or a late owner.
        with contextlib.suppress(DuplicateKeyError):
            await self._history.insert_one(entry)

    async def _replace_latest(self, sidebar: SidebarReady, body: str) -> None:
        # Runs of one conversation may finish out of order: shared/latest_sidebar.py keeps
        # the newest. Two first upserts of one conversation may race to insert it; the loser
        # finds the document there on its second try.
        key = {"_id": scoped_key(sidebar.business_id, sidebar.conversation_id)}
        update = latest_update(sidebar, body)
        try:
            await self._sidebars.update_one(key, update, upsert=True)
        except DuplicateKeyError:
            await self._sidebars.update_one(key, update, upsert=True)

    async def ensure_indexes(self) -> None:
        """The store's history query on MongoDB; FerretDB accepts it, and the hot path needs none.
        The same index on ``runs``, from before ``run_history``, only slows each claim: it goes."""
        with mongo_errors("create indexes"):
            await self._history.create_index(INDEX)
            with contextlib.suppress(OperationFailure):  # absent: a new database, or dropped already
                await self._runs.drop_index(INDEX)
