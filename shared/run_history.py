"""A conversation's sidebar history, as the ``run_history`` collection holds it.

One document per published run, inserted when the run's sidebar is recorded and
never updated: ``_id`` is the run's (``<business_id>:<event_id>``), so recording a
run twice is a duplicate key, not a second entry. It holds the ``sidebar.ready``
body as JSON text (widget field names may hold "." or "$", which MongoDB refuses
as keys) and what operators read back of each widget's run: everything but its
output, which is in the sidebar.

The run's claim (its insert into ``runs`` when the event arrives) stays as it was
inserted. Recording by an insert here rather than an update of the claim matters on
FerretDB's SQLite backend: an update reads, rewrites and re-stores the whole
document, about three times the CPU of an insert of the same size.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pymongo import ASCENDING, DESCENDING

from shared.contracts.jobs import WidgetResult
from shared.mongo import Document

SIDEBAR_FIELD = "sidebar_json"
# Newest first, ties in a stable order; the index below serves it.
NEWEST_FIRST = [("created_at", DESCENDING), ("_id", ASCENDING)]
INDEX = [("business_id", ASCENDING), ("conversation_id", ASCENDING), ("created_at", DESCENDING)]


def history_document(
    *,
    run_id: str,
    event_id: str,
    business_id: str,
    conversation_id: str,
    created_at: datetime,
    published_at: datetime,
    attempt: int,
    sidebar_json: str,
    results: Iterable[WidgetResult],
) -> Document:
    """The history entry of a published run; ``created_at`` is when its event was taken."""
    return {
        "_id": run_id,
        "event_id": event_id,
        "business_id": business_id,
        "conversation_id": conversation_id,
        "created_at": created_at,
        "published_at": published_at,
        "attempt": attempt,
        SIDEBAR_FIELD: sidebar_json,
        "results": [_widget_log(result) for result in results],
    }


def conversation_query(business_id: str, conversation_id: str) -> Document:
    return {"business_id": business_id, "conversation_id": conversation_id}


def _widget_log(result: WidgetResult) -> Document:
    return {
        "widget_id": result.widget_id,
        "job_id": result.job_id,
        "status": result.status,
        "duration_ms": result.duration_ms,
        "error": None if result.error is None else result.error.model_dump(),
        "logs": result.logs,
        "logs_truncated": result.logs_truncated,
    }
