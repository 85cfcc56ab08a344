"""Assemble a sidebar from a run and its results: pure logic, no I/O.

Every snapshotted widget appears exactly once, in position order; a widget
without a result gets ``timeout`` (or ``expired``, when its event was too old
to run); failed widgets carry their name as the title and no items, so the
frontend can keep the card's header. A widget's output is
the executor's typed ``WidgetOutput``, passed through as it is.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from orchestrator.runs import Run, WidgetSnapshot
from shared.contracts.events import SidebarReady, SidebarWidget, WidgetError
from shared.contracts.jobs import WidgetResult
from shared.contracts.widget_output import placeholder_output

_SIDEBAR_NAMESPACE = uuid.UUID("5b0f6a1e-3c2d-4e8f-9a7b-1d2c3e4f5a6b")
MissingStatus = Literal["timeout", "expired"]
_NO_RESULT: dict[MissingStatus, WidgetError] = {
    "timeout": WidgetError(type="timeout", message="no result arrived before the sidebar deadline"),
    "expired": WidgetError(
        type="expired", message="not run: the event was older than admission allows when it was taken"
    ),
}


def widget_event_id(business_id: str, event_id: str, widget_id: str) -> str:
    return uuid.uuid5(_SIDEBAR_NAMESPACE, f"{business_id}:{event_id}:{widget_id}").hex


def sidebar_event_id(business_id: str, event_id: str) -> str:
    """Deterministic, so a re-published sidebar carries the same id and clients can dedupe."""
    return uuid.uuid5(_SIDEBAR_NAMESPACE, f"{business_id}:{event_id}").hex


def widget_entry(
    run: Run, widget: WidgetSnapshot, result: WidgetResult | None, now: datetime, missing: MissingStatus = "timeout"
) -> SidebarWidget:
    """One widget's sidebar entry: its result, or ``missing`` when none arrived."""
    if result is None:
        waited = 0 if missing == "expired" else max(0, round((now - run.received_at).total_seconds() * 1000))
        return SidebarWidget(
            widget_id=widget.widget_id,
            name=widget.name,
            position=widget.position,
            status=missing,
            duration_ms=waited,
            data=placeholder_output(widget.name),
            error=_NO_RESULT[missing],
        )
    ok = result.status == "ok" and result.data is not None
    return SidebarWidget(
        widget_id=widget.widget_id,
        name=widget.name,
        position=widget.position,
        status="ok" if ok else (result.status if result.status in ("timeout", "expired") else "error"),
        duration_ms=result.duration_ms,
        data=result.data if ok and result.data is not None else placeholder_output(widget.name),
        error=None if ok else (result.error or WidgetError(type="error", message="")),
    )


def assemble_sidebar(
    run: Run, results: Mapping[str, WidgetResult], generated_at: datetime, missing: MissingStatus = "timeout"
) -> SidebarReady:
    ordered = sorted(run.widgets, key=lambda w: (w.position, w.widget_id))
    return SidebarReady(
        event_id=sidebar_event_id(run.business_id, run.event_id),
        business_id=run.business_id,
        conversation_id=run.conversation_id,
        trigger_event_id=run.event_id,
        generated_at=generated_at,
        widgets=[widget_entry(run, w, results.get(w.widget_id), generated_at, missing) for w in ordered],
    )
