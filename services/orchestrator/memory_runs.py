"""An in-memory run store with the same semantics as the MongoDB adapter.

For unit tests of orchestration logic; the shared behaviour suite in
tests/integration/test_run_store.py runs against both, which keeps it honest.
"""

from __future__ import annotations

from orchestrator.runs import Run, RunKey, StoredRun
from shared.contracts.events import SidebarReady
from shared.contracts.jobs import WidgetResult


class InMemoryRunStore:
    def __init__(self) -> None:
        self.runs: dict[RunKey, StoredRun] = {}
        self.owners: dict[RunKey, str] = {}
        self.history: dict[RunKey, SidebarReady] = {}
        self.latest: dict[tuple[str, str], SidebarReady] = {}

    async def create(self, run: Run, owner: str) -> bool:
        if run.key in self.runs:
            return False
        self.runs[run.key] = StoredRun(run, published=False)
        self.owners[run.key] = owner
        return True

    async def get(self, key: RunKey) -> StoredRun | None:
        return self.runs.get(key)

    async def record(self, run: Run, sidebar: SidebarReady, results: dict[str, WidgetResult]) -> None:
        stored = self.runs.get(run.key)
        if stored is not None:
            self.runs[run.key] = StoredRun(stored.run, published=True)
        self.history.setdefault(run.key, sidebar)  # the first record stays, as an insert's would
        conversation = (sidebar.business_id, sidebar.conversation_id)
        current = self.latest.get(conversation)
        if current is None or current.generated_at < sidebar.generated_at:
            self.latest[conversation] = sidebar
