"""Runs and widget results for tests of the orchestrator's logic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from orchestrator.runs import Run, WidgetSnapshot
from shared.contracts.events import WidgetError
from shared.contracts.jobs import WidgetResult
from shared.contracts.widget_output import WidgetOutput

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_run(
    *widget_ids: str,
    event_id: str = "evt-1",
    business_id: str = "acme",
    conversation_id: str = "c1",
    at: datetime = T0,
    deadline_s: float = 12,
) -> Run:
    """A run of widgets named by their ids, positioned in that order, with 10 s timeouts."""
    return Run(
        event_id=event_id,
        business_id=business_id,
        conversation_id=conversation_id,
        occurred_at=at,
        received_at=at,
        deadline_at=at + timedelta(seconds=deadline_s),
        widgets=tuple(WidgetSnapshot(w, w.upper(), n, 10.0) for n, w in enumerate(widget_ids, start=1)),
    )


def make_result(
    run: Run,
    widget_id: str,
    status: Literal["ok", "error", "timeout"] = "ok",
    *,
    data: WidgetOutput | None = None,
    error: WidgetError | None = None,
    duration_ms: int = 42,
    logs: str = "",
) -> WidgetResult:
    if status == "ok" and data is None:
        data = WidgetOutput(title=widget_id.upper(), items=[])
    return WidgetResult(
        job_id=f"{run.event_id}.{widget_id}",
        run_id=run.event_id,
        purpose="sidebar",
        business_id=run.business_id,
        conversation_id=run.conversation_id,
        widget_id=widget_id,
        status=status,
        duration_ms=duration_ms,
        data=data,
        error=error,
        logs=logs,
        finished_at=run.received_at,
    )
