"""MongoDB adapters of the store's aggregates, one module each.

Tenant isolation holds at the data layer too, not only in auth: a business's
documents are addressed by ``scoped_key(business_id, id)``, which no other
business can produce, and every read checks the document's ``business_id``.
Reads by key filter on ``_id`` alone because FerretDB's SQLite backend pushes
only that down; adding ``business_id`` to the filter makes it scan the collection.
Queries that are not by key (lists, public ids) filter on ``business_id``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.mongo import Document


def stored_now() -> datetime:
    """The current UTC time at BSON's millisecond precision, so what a write returns equals what a read returns."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def owned_by(business_id: str, doc: Document | None) -> Document | None:
    """``doc`` if it belongs to ``business_id``: a second guard behind the scoped key."""
    return doc if doc is not None and doc.get("business_id") == business_id else None
