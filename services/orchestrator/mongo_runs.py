"""The MongoDB adapter of the run store.

Collections: ``runs`` (one per event, written at creation and then only by the
claim holder), ``run_results`` (one per widget result), ``run_markers``
(inserted facts: jobs published, assembly claims), ``run_deadlines`` (only runs
not yet published, so the sweep stays small) and ``sidebars`` (latest per
conversation). Every id is prefixed by the business id, and every hot-path read
is an ``_id`` lookup (see shared/mongo.py for why).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from orchestrator.runs import Progress, RecordedResult, Run, RunKey, WidgetSnapshot
from shared.contracts.events import SidebarReady
from shared.contracts.jobs import job_id_for
from shared.ids import scoped_key
from shared.mongo import RUN_DEADLINES, RUN_MARKERS, RUN_RESULTS, RUNS, SIDEBARS, Document, mongo_errors

_RESULT_FIELDS = ("status", "duration_ms", "error", "job_id", "logs", "logs_truncated")


def _run_id(key: RunKey) -> str:
    return scoped_key(key.business_id, key.event_id)


def _result_id(key: RunKey, widget_id: str) -> str:
    return scoped_key(key.business_id, job_id_for(key.event_id, widget_id))


def _to_document(run: Run) -> Document:
    return {
        "_id": _run_id(run.key),
        "event_id": run.event_id,
        "business_id": run.business_id,
        "conversation_id": run.conversation_id,
        "agent_id": run.agent_id,
        "status": run.status,
        "occurred_at": run.occurred_at,
        "created_at": run.received_at,
        "deadline_at": run.deadline_at,
        "widgets": [
            {"widget_id": w.widget_id, "name": w.name, "position": w.position, "timeout_s": w.timeout_s}
            for w in run.widgets
        ],
    }


def _from_documents(doc: Document, jobs_published: bool, results: list[Document | None]) -> Run:
    recorded: dict[str, RecordedResult] = {}
    for result in results:
        if result is not None:
            fields: dict[str, Any] = {k: result[k] for k in _RESULT_FIELDS if k in result}
            data = result.get("data_json")
            recorded[result["widget_id"]] = RecordedResult(**fields, data=None if data is None else json.loads(data))
    return Run(
        event_id=doc["event_id"],
        business_id=doc["business_id"],
        conversation_id=doc["conversation_id"],
        agent_id=doc.get("agent_id"),
        status=doc["status"],
        occurred_at=doc["occurred_at"],
        received_at=doc["created_at"],
        deadline_at=doc["deadline_at"],
        widgets=tuple(WidgetSnapshot(**w) for w in doc["widgets"]),
        jobs_published=jobs_published,
        results=recorded,
    )


class MongoRunStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._runs = db[RUNS]
        self._results = db[RUN_RESULTS]
        self._markers = db[RUN_MARKERS]
        self._deadlines = db[RUN_DEADLINES]
        self._sidebars = db[SIDEBARS]

    async def create(self, run: Run) -> bool:
        run_id = _run_id(run.key)
        with mongo_errors("create run"):
            try:
                await self._runs.insert_one(_to_document(run))
            except DuplicateKeyError:
                return False
            await self._deadlines.insert_one(
                {
                    "_id": run_id,
                    "business_id": run.business_id,
                    "event_id": run.event_id,
                    "deadline_at": run.deadline_at,
                }
            )
        return True

    async def get(self, key: RunKey) -> Run | None:
        run_id = _run_id(key)
        with mongo_errors("read run"):
            doc = await self._runs.find_one({"_id": run_id})
            if doc is None:
                return None
            marker, *results = await asyncio.gather(
                self._markers.find_one({"_id": f"{run_id}:jobs-published"}),
                *(self._results.find_one({"_id": _result_id(key, w["widget_id"])}) for w in doc["widgets"]),
            )
        return _from_documents(doc, marker is not None, results)

    async def mark_jobs_published(self, key: RunKey) -> None:
        with mongo_errors("mark jobs published"), contextlib.suppress(DuplicateKeyError):
            await self._markers.insert_one({"_id": f"{_run_id(key)}:jobs-published", "at": datetime.now(UTC)})

    async def record_result(self, key: RunKey, widget_id: str, result: RecordedResult) -> bool:
        fields = {k: v for k, v in vars(result).items() if k != "data"}
        document = {
            "_id": _result_id(key, widget_id),
            "run_id": _run_id(key),
            "widget_id": widget_id,
            **fields,
            # Widget output as JSON text: its field names may hold "." or "$", which
            # MongoDB and FerretDB refuse as document keys.
            "data_json": None if result.data is None else json.dumps(result.data),
            "recorded_at": datetime.now(UTC),
        }
        with mongo_errors("record result"):
            try:
                await self._results.insert_one(document)
            except DuplicateKeyError:
                return False
        return True

    async def progress(self, key: RunKey, recorded_widget_id: str) -> Progress | None:
        # One read of the run, then existence checks by _id (the only filter FerretDB pushes
        # down), stopping at the first missing result: most results find one at once, and
        # only the last of a run checks them all. Results arrive as N messages, so reading
        # every result on each one would cost N * N reads per sidebar.
        with mongo_errors("read run progress"):
            doc = await self._runs.find_one({"_id": _run_id(key)})
            if doc is None:
                return None
            complete = True
            for widget in doc["widgets"]:
                if widget["widget_id"] == recorded_widget_id:
                    continue
                if await self._results.find_one({"_id": _result_id(key, widget["widget_id"])}, {"_id": 1}) is None:
                    complete = False
                    break
        return Progress(_from_documents(doc, False, []), complete)

    async def claim_for_assembly(self, key: RunKey, now: datetime, lease_s: float) -> Run | None:
        run_id = _run_id(key)
        with mongo_errors("claim run"):
            run = await self._runs.find_one({"_id": run_id}, {"status": 1, "claim_attempt": 1, "claimed_at": 1})
            if run is None or run["status"] == "published":
                return None
            if run.get("claimed_at") is not None and run["claimed_at"] > now - timedelta(seconds=lease_s):
                return None
            attempt = await self._take_claim(run_id, int(run.get("claim_attempt") or 0) + 1, now, lease_s)
            if attempt is None:
                return None
            # Only the claim holder writes the run document from here on.
            await self._runs.update_one(
                {"_id": run_id}, {"$set": {"status": "assembling", "claim_attempt": attempt, "claimed_at": now}}
            )
        return await self.get(key)

    async def _take_claim(self, run_id: str, attempt: int, now: datetime, lease_s: float) -> int | None:
        """Insert the next claim marker. A marker whose holder died before recording it on the
        run (so the run still names an older attempt) is skipped once its lease has expired."""
        for candidate in range(attempt, attempt + 10):
            try:
                await self._markers.insert_one({"_id": f"{run_id}:claim-{candidate}", "at": now})
            except DuplicateKeyError:
                held = await self._markers.find_one({"_id": f"{run_id}:claim-{candidate}"})
                if held is None or held["at"] > now - timedelta(seconds=lease_s):
                    return None
                continue
            return candidate
        return None

    async def complete(self, key: RunKey, sidebar: SidebarReady) -> None:
        body = sidebar.model_dump_json()  # text: widget field names may hold "." or "$"
        latest = {
            "business_id": sidebar.business_id,
            "conversation_id": sidebar.conversation_id,
            "generated_at": sidebar.generated_at,
            "trigger_event_id": sidebar.trigger_event_id,
            "sidebar_json": body,
        }
        conversation_key = scoped_key(sidebar.business_id, sidebar.conversation_id)
        with mongo_errors("store sidebar"):
            await self._runs.update_one({"_id": _run_id(key)}, {"$set": {"sidebar_json": body}})
            # Only replace an older sidebar: runs of one conversation may finish out of order,
            # and the upsert's duplicate key means a newer one is already stored.
            with contextlib.suppress(DuplicateKeyError):
                await self._sidebars.replace_one(
                    {"_id": conversation_key, "generated_at": {"$lt": sidebar.generated_at}}, latest, upsert=True
                )

    async def mark_published(self, key: RunKey, published_at: datetime) -> None:
        run_id = _run_id(key)
        with mongo_errors("mark run published"):
            await self._runs.update_one(
                {"_id": run_id}, {"$set": {"status": "published", "published_at": published_at}}
            )
            await self._deadlines.delete_one({"_id": run_id})

    async def due(self, now: datetime, lease_s: float, limit: int) -> list[RunKey]:
        with mongo_errors("find due runs"):
            docs = await self._deadlines.find({"deadline_at": {"$lte": now}}).limit(limit).to_list()
        return [RunKey(doc["business_id"], doc["event_id"]) for doc in docs]

    async def ensure_indexes(self) -> None:
        """Indexes for MongoDB; FerretDB accepts them, and the hot paths need none."""
        with mongo_errors("create indexes"):
            await self._runs.create_index([("business_id", 1), ("conversation_id", 1), ("created_at", -1)])
            await self._deadlines.create_index([("deadline_at", 1)])
