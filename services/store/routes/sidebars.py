"""Routes of sidebars: the latest one of a conversation, and its run history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from shared.contracts.events import SidebarReady
from store.auth import BusinessId
from store.dependencies import Deps
from store.errors import NotFound
from store.repositories.sidebars import MAX_HISTORY
from store.routes.conversations import ConversationId, existing_conversation
from store.routes.responses import error_responses

TAG = "sidebars"


def sidebars_router() -> APIRouter:
    router = APIRouter(prefix="/v1/businesses/{business_id}/conversations/{conversation_id}", tags=[TAG])

    # Served exactly as stored; SidebarReady only documents the shape.
    @router.get(
        "/sidebar",
        response_model=None,
        responses={200: {"model": SidebarReady}, **error_responses(401, 403, 404, 422, 503)},
        summary="The latest sidebar (the sidebar.ready body)",
    )
    async def latest_sidebar(business_id: BusinessId, conversation_id: ConversationId, deps: Deps) -> dict[str, Any]:
        await existing_conversation(deps, business_id, conversation_id)
        sidebar = await deps.sidebars.latest(business_id, conversation_id)
        if sidebar is None:
            raise NotFound(f"no sidebar has been generated for conversation {conversation_id!r} yet")
        return sidebar

    @router.get(
        "/sidebars",
        response_model=None,
        responses={200: {"model": list[SidebarReady]}, **error_responses(401, 403, 404, 422, 503)},
        summary="Sidebars of past runs, newest first",
    )
    async def sidebar_history(
        business_id: BusinessId,
        conversation_id: ConversationId,
        deps: Deps,
        limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 20,
    ) -> list[dict[str, Any]]:
        await existing_conversation(deps, business_id, conversation_id)
        return await deps.sidebars.history(business_id, conversation_id, limit)

    return router
