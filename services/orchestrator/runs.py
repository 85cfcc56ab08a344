"""Runs: one per ``conversation.opened`` event, the unit of idempotency.

A run snapshots the widgets that were active when the event arrived, collects
one result per widget and moves ``collecting -> assembling -> published``.

Every decision that must have exactly one winner is an insert with a
deterministic ``_id``: the run (business and event id), each result (job id)
and each assembly claim (run and attempt). Inserts are atomic on MongoDB and on
FerretDB alike; conditional updates are not atomic on FerretDB's SQLite
backend, so nothing here relies on them for correctness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple, Protocol

from shared.contracts.events import SidebarReady

RunStatus = Literal["collecting", "assembling", "published"]


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
class RecordedResult:
    status: str
    duration_ms: int
    data: dict[str, Any] | None
    error: dict[str, str] | None
    job_id: str
    logs: str = ""
    logs_truncated: bool = False


@dataclass(frozen=True)
class Run:
    event_id: str
    business_id: str
    conversation_id: str
    status: RunStatus
    occurred_at: datetime
    received_at: datetime
    deadline_at: datetime
    widgets: tuple[WidgetSnapshot, ...]
    agent_id: str | None = None
    jobs_published: bool = False
    results: dict[str, RecordedResult] = field(default_factory=dict)

    @property
    def key(self) -> RunKey:
        return RunKey(self.business_id, self.event_id)

    @property
    def complete(self) -> bool:
        return all(w.widget_id in self.results for w in self.widgets)


@dataclass(frozen=True)
class Progress:
    """What result handling needs after recording one result: the run's identity,
    snapshot and status (``run.results`` is empty and ``run.jobs_published`` unread),
    and whether every widget now has a result."""

    run: Run
    complete: bool


class RunStore(Protocol):
    async def create(self, run: Run) -> bool:
        """Insert the run; False when a run with this id already exists."""

    async def get(self, key: RunKey) -> Run | None:
        """The run with the results recorded so far."""

    async def mark_jobs_published(self, key: RunKey) -> None: ...

    async def record_result(self, key: RunKey, widget_id: str, result: RecordedResult) -> bool:
        """Record a job's result once; False when this job's result was already recorded."""

    async def progress(self, key: RunKey, recorded_widget_id: str) -> Progress | None:
        """After ``recorded_widget_id``'s result was recorded. Cheaper than ``get``: results
        are checked, not read, and only until the first one missing."""

    async def claim_for_assembly(self, key: RunKey, now: datetime, lease_s: float) -> Run | None:
        """Take the run for assembly, with its results; None if another claim holds or it is done.
        A claim older than ``lease_s`` on an unpublished run can be taken over."""

    async def complete(self, key: RunKey, sidebar: SidebarReady) -> None:
        """Store the sidebar in the run history and as the conversation's latest."""

    async def mark_published(self, key: RunKey, published_at: datetime) -> None: ...

    async def due(self, now: datetime, lease_s: float, limit: int) -> list[RunKey]:
        """Unpublished runs past their deadline (their claim decides who assembles them)."""
