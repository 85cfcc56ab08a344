"""Routes of conversations: upsert, read by id or public id, list, and open (publish the event)."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Path, Query, Response, status

from shared.ids import Id
from store.auth import BusinessId
from store.dependencies import Deps
from store.errors import NotFound
from store.repositories.conversations import Conversation, ConversationFields
from store.routes.responses import error_responses
from store.schemas import ConversationRequest, ConversationResponse, OpenConversationRequest, OpenedResponse

TAG = "conversations"

ConversationId = Annotated[Id, Path(description="The business's own id of the conversation")]
PublicId = Annotated[Id, Path(description="The id the help desk shows, unique per business")]


async def existing_conversation(deps: Deps, business_id: str, conversation_id: str) -> Conversation:
    structlog.contextvars.bind_contextvars(conversation_id=conversation_id)
    conversation = await deps.conversations.get(business_id, conversation_id)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id!r} not found")
    return conversation


def conversations_router() -> APIRouter:
    router = APIRouter(prefix="/v1/businesses/{business_id}/conversations", tags=[TAG])

    @router.put(
        "/{conversation_id}",
        responses={
            201: {"model": ConversationResponse, "description": "Created"},
            **error_responses(400, 401, 403, 409, 413, 422, 503),
        },
        summary="Create or replace a conversation",
    )
    async def put_conversation(
        business_id: BusinessId,
        conversation_id: ConversationId,
        body: ConversationRequest,
        deps: Deps,
        response: Response,
    ) -> ConversationResponse:
        """Fields left out are stored as null (attributes as `{}`); `created_at` is kept. A public id
        already used by another conversation of the business is a 409."""
        structlog.contextvars.bind_contextvars(conversation_id=conversation_id)
        fields = ConversationFields(
            public_id=body.public_id,
            customer_id=body.customer_id,
            channel=body.channel,
            subject=body.subject,
            status=body.status,
            attributes=body.attributes,
        )
        conversation, created = await deps.conversations.upsert(business_id, conversation_id, fields)
        response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return ConversationResponse.of(conversation)

    @router.get("", responses=error_responses(401, 403, 422, 503), summary="List conversations, newest first")
    async def list_conversations(
        business_id: BusinessId, deps: Deps, limit: Annotated[int, Query(ge=1, le=200)] = 50
    ) -> list[ConversationResponse]:
        return [ConversationResponse.of(c) for c in await deps.conversations.newest(business_id, limit)]

    @router.get(
        "/by-public-id/{public_id}",
        responses=error_responses(401, 403, 404, 422, 503),
        summary="Read a conversation by its public id",
    )
    async def read_by_public_id(business_id: BusinessId, public_id: PublicId, deps: Deps) -> ConversationResponse:
        conversation = await deps.conversations.by_public_id(business_id, public_id)
        if conversation is None:
            raise NotFound(f"no conversation has public id {public_id!r}")
        structlog.contextvars.bind_contextvars(conversation_id=conversation.conversation_id)
        return ConversationResponse.of(conversation)

    @router.get("/{conversation_id}", responses=error_responses(401, 403, 404, 422, 503), summary="Read a conversation")
    async def read_conversation(
        business_id: BusinessId, conversation_id: ConversationId, deps: Deps
    ) -> ConversationResponse:
        return ConversationResponse.of(await existing_conversation(deps, business_id, conversation_id))

    @router.post(
        "/{conversation_id}/open",
        status_code=status.HTTP_202_ACCEPTED,
        responses=error_responses(400, 401, 403, 404, 413, 422, 503),
        summary="Open a conversation: publish conversation.opened",
    )
    async def open_conversation(
        business_id: BusinessId,
        conversation_id: ConversationId,
        deps: Deps,
        body: OpenConversationRequest | None = None,
    ) -> OpenedResponse:
        """The orchestrator runs the business's active widgets and publishes `sidebar.ready`;
        read the result with GET `.../sidebar`. The body (optional) names the agent."""
        await existing_conversation(deps, business_id, conversation_id)
        agent_id = body.agent_id if body is not None else None
        event = await deps.events.conversation_opened(business_id, conversation_id, agent_id)
        return OpenedResponse(event_id=event.event_id)

    return router
