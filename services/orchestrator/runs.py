"""Runs: one per ``conversation.opened`` event, the unit of idempotency.

A run snapshots the widgets that were active when the event arrived. Its
results live only in the memory of the replica that owns it (the one holding
the event's delivery); the database sees a run twice: its insert, which decides
exactly once who runs the event, and its record, the assembled sidebar.

The insert uses a deterministic ``_id`` (business and event id): inserts are
atomic on MongoDB and on FerretDB alike, whereas FerretDB's SQLite backend
applies conditional updates without a transaction, so nothing here relies on
them for correctness.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from shared.contracts.events import SidebarReady
from shared.contracts.jobs import WidgetResult


class RunKey(NamedTuple):
    """Runs are scoped by business, so one business can never pre-empt another's event id."""

    business_id: str
    event_id: str


@dataclass(frozen=True)
class WidgetSnapshot:
    widget_id: str
    name: str
    position: int
    timeout_s: float


@dataclass(frozen=True)
class WidgetDefinition:
    snapshot: WidgetSnapshot
    code: str


@dataclass(frozen=True)
class Run:
    event_id: str
    business_id: str
    conversation_id: str
    occurred_at: datetime
    received_at: datetime
    deadline_at: datetime
    widgets: tuple[WidgetSnapshot, ...]
    agent_id: str | None = None
    # 1 for the replica that created the run; each takeover of an unpublished run adds one.
    attempt: int = 1

    @property
    def key(self) -> RunKey:
        return RunKey(self.business_id, self.event_id)


@dataclass(frozen=True)
class StoredRun:
    run: Run
    published: bool


class RunStore(Protocol):
    async def create(self, run: Run, owner: str) -> bool:
        """Insert the run; False when a run with this id already exists."""

    async def get(self, key: RunKey) -> StoredRun | None:
        """The run as inserted, and whether its sidebar was recorded."""

    async def record(self, run: Run, sidebar: SidebarReady, results: dict[str, WidgetResult]) -> None:
        """Store the sidebar in the run's history and as the conversation's latest. Idempotent."""
