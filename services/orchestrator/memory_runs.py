"""An in-memory run store with the same semantics as the MongoDB adapter.

For unit tests of orchestration logic; the shared behaviour suite in
tests/integration/test_run_store.py runs against both, which keeps it honest.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from orchestrator.runs import RecordedResult, Run
from shared.contracts.events import SidebarReady


class InMemoryRunStore:
    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.claimed_at: dict[str, datetime] = {}
        self.history: dict[str, SidebarReady] = {}
        self.latest: dict[tuple[str, str], SidebarReady] = {}
        self.job_ids: set[str] = set()

    async def create(self, run: Run) -> bool:
        if run.run_id in self.runs:
            return False
        self.runs[run.run_id] = run
        return True

    async def get(self, run_id: str) -> Run | None:
        return self.runs.get(run_id)

    async def mark_jobs_published(self, run_id: str) -> None:
        self.runs[run_id] = dataclasses.replace(self.runs[run_id], jobs_published=True)

    async def record_result(self, run_id: str, widget_id: str, result: RecordedResult) -> bool:
        if result.job_id in self.job_ids:
            return False
        self.job_ids.add(result.job_id)
        run = self.runs.get(run_id)
        if run is not None and widget_id not in run.results:
            self.runs[run_id] = dataclasses.replace(run, results={**run.results, widget_id: result})
        return True

    async def claim_for_assembly(self, run_id: str, now: datetime, lease_s: float) -> Run | None:
        run = self.runs.get(run_id)
        if run is None or run.status == "published":
            return None
        claimed = self.claimed_at.get(run_id)
        if claimed is not None and claimed > now - timedelta(seconds=lease_s):
            return None
        self.runs[run_id] = dataclasses.replace(run, status="assembling")
        self.claimed_at[run_id] = now
        return self.runs[run_id]

    async def complete(self, run_id: str, sidebar: SidebarReady) -> None:
        self.history[run_id] = sidebar
        key = (sidebar.business_id, sidebar.conversation_id)
        current = self.latest.get(key)
        if current is None or current.generated_at < sidebar.generated_at:
            self.latest[key] = sidebar

    async def mark_published(self, run_id: str, published_at: datetime) -> None:
        self.runs[run_id] = dataclasses.replace(self.runs[run_id], status="published")

    async def due(self, now: datetime, lease_s: float, limit: int) -> list[str]:
        expired = now - timedelta(seconds=lease_s)
        due = [
            run.run_id
            for run in self.runs.values()
            if (run.status == "collecting" and run.jobs_published and run.deadline_at <= now)
            or (run.status == "assembling" and self.claimed_at[run.run_id] <= expired)
        ]
        return due[:limit]
