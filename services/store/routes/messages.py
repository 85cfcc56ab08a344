"""Routes of conversation messages, agent side: read a conversation's messages with the business key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from store.auth import BusinessId
from store.dependencies import Deps
from store.repositories.messages import MAX_LISTED
from store.routes.conversations import TAG, ConversationId, existing_conversation
from store.routes.responses import error_responses
from store.schemas import MessageResponse


def messages_router() -> APIRouter:
    router = APIRouter(prefix="/v1/businesses/{business_id}/conversations/{conversation_id}", tags=[TAG])

    @router.get(
        "/messages",
        responses=error_responses(401, 403, 404, 422, 503),
        summary="The conversation's messages, oldest first",
    )
    async def list_messages(
        business_id: BusinessId,
        conversation_id: ConversationId,
        deps: Deps,
        limit: Annotated[int, Query(ge=1, le=MAX_LISTED, description="At most this many, the latest")] = 200,
    ) -> list[MessageResponse]:
        await existing_conversation(deps, business_id, conversation_id)
        messages = await deps.messages.in_conversation(business_id, conversation_id, limit)
        return [MessageResponse.of(m) for m in messages]

    return router
