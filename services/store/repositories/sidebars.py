"""Sidebars, read-only: the orchestrator writes the latest per conversation and one per run.

Both hold the ``sidebar.ready`` body as JSON text (widget field names may hold "."
or "$", which MongoDB refuses as keys), returned exactly as stored: a run's as
shared/run_history.py describes, the latest as shared/latest_sidebar.py does.
"""

from __future__ import annotations

import json
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from shared.ids import scoped_key
from shared.latest_sidebar import latest_body
from shared.mongo import RUN_HISTORY, SIDEBARS, Document, mongo_errors
from shared.run_history import NEWEST_FIRST, SIDEBAR_FIELD, conversation_query
from store.repositories import owned_by

MAX_HISTORY = 100


class SidebarRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._sidebars = db[SIDEBARS]
        self._history = db[RUN_HISTORY]

    async def latest(self, business_id: str, conversation_id: str) -> dict[str, Any] | None:
        with mongo_errors("read sidebar"):
            doc = owned_by(
                business_id, await self._sidebars.find_one({"_id": scoped_key(business_id, conversation_id)})
            )
        return None if doc is None else _parse(latest_body(doc))

    async def history(self, business_id: str, conversation_id: str, limit: int) -> list[dict[str, Any]]:
        """Sidebars of the conversation's published runs, newest first."""
        with mongo_errors("read sidebar history"):
            docs = (
                await self._history.find(conversation_query(business_id, conversation_id), {SIDEBAR_FIELD: 1})
                .sort(NEWEST_FIRST)
                .limit(min(limit, MAX_HISTORY))
                .to_list()
            )
        return [_parse(doc[SIDEBAR_FIELD]) for doc in docs]


def _parse(text: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(text)
    return body
