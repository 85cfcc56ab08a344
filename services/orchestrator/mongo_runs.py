"""The MongoDB adapter of the run store: collections ``runs``, ``run_results``,
``run_claims`` and ``sidebars``.

Exactly-once decisions are inserts with deterministic ``_id``s (see runs.py);
the run document itself is only written by the replica holding the claim.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from orchestrator.runs import RecordedResult, Run, WidgetSnapshot
from shared.contracts.events import SidebarReady
from shared.ids import scoped_key
from shared.mongo import RUN_CLAIMS, RUN_RESULTS, RUNS, SIDEBARS, Document, mongo_errors


def _to_document(run: Run) -> Document:
    return {
        "_id": run.run_id,
        "business_id": run.business_id,
        "conversation_id": run.conversation_id,
        "status": run.status,
        "created_at": run.received_at,
        "deadline_at": run.deadline_at,
        "jobs_published": run.jobs_published,
        "widgets": [
            {"widget_id": w.widget_id, "name": w.name, "position": w.position, "timeout_s": w.timeout_s}
            for w in run.widgets
        ],
    }


def _from_documents(doc: Document, results: list[Document]) -> Run:
    recorded: dict[str, RecordedResult] = {}
    for result in results:
        fields: dict[str, Any] = {k: result[k] for k in ("status", "duration_ms", "data", "error", "job_id")}
        recorded.setdefault(result["widget_id"], RecordedResult(**fields))
    return Run(
        run_id=doc["_id"],
        business_id=doc["business_id"],
        conversation_id=doc["conversation_id"],
        status=doc["status"],
        received_at=doc["created_at"],
        deadline_at=doc["deadline_at"],
        widgets=tuple(WidgetSnapshot(**w) for w in doc["widgets"]),
        jobs_published=bool(doc.get("jobs_published")),
        results=recorded,
    )


class MongoRunStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._runs = db[RUNS]
        self._results = db[RUN_RESULTS]
        self._claims = db[RUN_CLAIMS]
        self._sidebars = db[SIDEBARS]

    async def create(self, run: Run) -> bool:
        with mongo_errors("create run"):
            try:
                await self._runs.insert_one(_to_document(run))
            except DuplicateKeyError:
                return False
        return True

    async def get(self, run_id: str) -> Run | None:
        with mongo_errors("read run"):
            doc = await self._runs.find_one({"_id": run_id})
            if doc is None:
                return None
            results = await self._results.find({"run_id": run_id}).sort("recorded_at", 1).to_list()
        return _from_documents(doc, results)

    async def mark_jobs_published(self, run_id: str) -> None:
        with mongo_errors("mark jobs published"):
            await self._runs.update_one({"_id": run_id}, {"$set": {"jobs_published": True}})

    async def record_result(self, run_id: str, widget_id: str, result: RecordedResult) -> bool:
        document = {"_id": result.job_id, "run_id": run_id, "widget_id": widget_id, **vars(result)}
        with mongo_errors("record result"):
            try:
                await self._results.insert_one({**document, "recorded_at": datetime.now(UTC)})
            except DuplicateKeyError:
                return False
        return True

    async def claim_for_assembly(self, run_id: str, now: datetime, lease_s: float) -> Run | None:
        with mongo_errors("claim run"):
            run = await self._runs.find_one({"_id": run_id}, {"status": 1})
            if run is None or run["status"] == "published":
                return None
            latest = await self._claims.find_one({"run_id": run_id}, sort=[("attempt", DESCENDING)])
            if latest is not None and latest["claimed_at"] > now - timedelta(seconds=lease_s):
                return None
            attempt = 1 if latest is None else latest["attempt"] + 1
            try:
                await self._claims.insert_one(
                    {"_id": f"{run_id}:{attempt}", "run_id": run_id, "attempt": attempt, "claimed_at": now}
                )
            except DuplicateKeyError:
                return None
            await self._runs.update_one({"_id": run_id}, {"$set": {"status": "assembling", "claimed_at": now}})
        return await self.get(run_id)

    async def complete(self, run_id: str, sidebar: SidebarReady) -> None:
        body = sidebar.model_dump(mode="json")
        latest = {
            "business_id": sidebar.business_id,
            "conversation_id": sidebar.conversation_id,
            "generated_at": sidebar.generated_at,
            "trigger_event_id": sidebar.trigger_event_id,
            "sidebar": body,
        }
        key = scoped_key(sidebar.business_id, sidebar.conversation_id)
        with mongo_errors("store sidebar"):
            await self._runs.update_one({"_id": run_id}, {"$set": {"sidebar": body}})
            # Only replace an older sidebar: runs of one conversation may finish out of order,
            # and the upsert's duplicate key means a newer one is already stored.
            with contextlib.suppress(DuplicateKeyError):
                await self._sidebars.replace_one(
                    {"_id": key, "generated_at": {"$lt": sidebar.generated_at}}, latest, upsert=True
                )

    async def mark_published(self, run_id: str, published_at: datetime) -> None:
        with mongo_errors("mark run published"):
            await self._runs.update_one(
                {"_id": run_id}, {"$set": {"status": "published", "published_at": published_at}}
            )

    async def due(self, now: datetime, lease_s: float, limit: int) -> list[str]:
        expired = now - timedelta(seconds=lease_s)
        query = {
            "$or": [
                {"status": "collecting", "jobs_published": True, "deadline_at": {"$lte": now}},
                {"status": "assembling", "claimed_at": {"$lte": expired}},
            ]
        }
        with mongo_errors("find due runs"):
            docs = await self._runs.find(query, {"_id": 1}).limit(limit).to_list()
        return [doc["_id"] for doc in docs]

    async def ensure_indexes(self) -> None:
        with mongo_errors("create indexes"):
            await self._runs.create_index([("status", 1), ("deadline_at", 1)])
            await self._runs.create_index([("business_id", 1), ("conversation_id", 1), ("created_at", -1)])
            await self._results.create_index([("run_id", 1)])
            await self._claims.create_index([("run_id", 1), ("attempt", -1)])
