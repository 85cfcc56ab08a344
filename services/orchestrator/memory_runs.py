"""An in-memory run store with the same semantics as the MongoDB adapter.

For unit tests of orchestration logic; the shared behaviour suite in
tests/integration/test_run_store.py runs against both, which keeps it honest.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from orchestrator.runs import Progress, RecordedResult, Run, RunKey
from shared.contracts.events import SidebarReady


class InMemoryRunStore:
    def __init__(self) -> None:
        self.runs: dict[RunKey, Run] = {}
        self.claimed_at: dict[RunKey, datetime] = {}
        self.history: dict[RunKey, SidebarReady] = {}
        self.latest: dict[tuple[str, str], SidebarReady] = {}
        self.recorded: set[tuple[RunKey, str]] = set()

    async def create(self, run: Run) -> bool:
        if run.key in self.runs:
            return False
        self.runs[run.key] = run
        return True

    async def get(self, key: RunKey) -> Run | None:
        return self.runs.get(key)

    async def mark_jobs_published(self, key: RunKey) -> None:
        self.runs[key] = dataclasses.replace(self.runs[key], jobs_published=True)

    async def record_result(self, key: RunKey, widget_id: str, result: RecordedResult) -> bool:
        if (key, widget_id) in self.recorded:
            return False
        self.recorded.add((key, widget_id))
        run = self.runs.get(key)
        if run is not None and widget_id not in run.results:
            self.runs[key] = dataclasses.replace(run, results={**run.results, widget_id: result})
        return True

    async def progress(self, key: RunKey, recorded_widget_id: str) -> Progress | None:
        run = self.runs.get(key)
        if run is None:
            return None
        return Progress(dataclasses.replace(run, results={}, jobs_published=False), run.complete)

    async def claim_for_assembly(self, key: RunKey, now: datetime, lease_s: float) -> Run | None:
        run = self.runs.get(key)
        if run is None or run.status == "published":
            return None
        claimed = self.claimed_at.get(key)
        if claimed is not None and claimed > now - timedelta(seconds=lease_s):
            return None
        self.runs[key] = dataclasses.replace(run, status="assembling")
        self.claimed_at[key] = now
        return self.runs[key]

    async def complete(self, key: RunKey, sidebar: SidebarReady) -> None:
        self.history[key] = sidebar
        conversation = (sidebar.business_id, sidebar.conversation_id)
        current = self.latest.get(conversation)
        if current is None or current.generated_at < sidebar.generated_at:
            self.latest[conversation] = sidebar

    async def mark_published(self, key: RunKey, published_at: datetime) -> None:
        self.runs[key] = dataclasses.replace(self.runs[key], status="published")

    async def due(self, now: datetime, lease_s: float, limit: int) -> list[RunKey]:
        due = [key for key, run in self.runs.items() if run.status != "published" and run.deadline_at <= now]
        return due[:limit]
