"""The latest sidebar of a conversation, as the ``sidebars`` collection holds it.

One document per conversation (``_id``: the business and conversation ids). Runs of
one conversation may finish out of order, so a write must never replace a newer
sidebar with an older one. The guard is ``$max`` on one string field, ``latest``:
the sidebar's ``generated_at`` (UTC, microseconds, fixed width), a newline, then the
``sidebar.ready`` body as JSON text (text, because widget field names may hold "."
or "$"). Strings compare character by character, so the newest sidebar is the
greatest string, and the write is one atomic command whose filter is ``_id`` alone:
the one filter FerretDB's SQLite backend looks up by index (a second key in the
filter makes it scan the collection). MongoDB applies ``$max`` atomically too.
"""

from __future__ import annotations

from datetime import UTC

from shared.contracts.events import SidebarReady
from shared.mongo import Document


def latest_update(sidebar: SidebarReady, body: str) -> Document:
    """The upsert that keeps ``body`` unless a newer sidebar is already stored."""
    generated_at = sidebar.generated_at.astimezone(UTC).isoformat(timespec="microseconds")
    return {
        "$max": {"latest": f"{generated_at}\n{body}"},
        "$setOnInsert": {"business_id": sidebar.business_id, "conversation_id": sidebar.conversation_id},
    }


def latest_body(doc: Document) -> str:
    """The stored ``sidebar.ready`` body, as JSON text."""
    text: str = doc["latest"]
    return text.partition("\n")[2]
