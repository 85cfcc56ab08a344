"""The public chat API the embeddable widget calls: no key, CORS for any origin, rate limited.

A visitor is a random id the widget keeps in ``localStorage``; knowing it is the
capability to read that visitor's messages. Their conversation is
``chat-<visitor_id>``, created on the first message.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated

import structlog
from fastapi import APIRouter, HTTPException, Path, Query, status
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.ids import Id
from store.dependencies import Deps
from store.errors import NotFound
from store.repositories.conversations import ConversationFields
from store.repositories.messages import MAX_LISTED
from store.routes.conversations import TAG
from store.routes.responses import ErrorResponses, error_responses
from store.schemas import (
    ChatMessageCreatedResponse,
    ChatMessageRequest,
    ErrorResponse,
    MessageResponse,
    VisitorId,
)

CHAT_PREFIX = "/v1/chat"
CHAT_CHANNEL = "chat"
SUBJECT_LENGTH = 80

MAX_TRACKED_VISITORS = 10_000

BusinessPath = Annotated[Id, Path(description="The business whose site embeds the chat widget")]


def chat_conversation_id(visitor_id: str) -> str:
    return f"chat-{visitor_id}"


class VisitorRateLimit:
    """A token bucket per key, in this process only: enough to stop a runaway page, not a distributed attack.

    Only the most recently active ``max_keys`` keys are tracked, so random visitor ids cannot grow it without bound.
    """

    def __init__(
        self,
        *,
        burst: int,
        window_s: float,
        max_keys: int = MAX_TRACKED_VISITORS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.window_s = window_s
        self._refill_per_s = burst / window_s
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()

    def allow(self, key: tuple[str, str]) -> bool:
        now = self._clock()
        tokens, updated = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - updated) * self._refill_per_s)
        allowed = tokens >= 1
        self._buckets[key] = (tokens - 1 if allowed else tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return allowed


class PublicChatCors:
    """CORS for the chat API only (any origin, no credentials); every other route stays same-origin."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._cors = CORSMiddleware(
            app, allow_origins=["*"], allow_methods=["GET", "POST"], allow_headers=["Content-Type"], max_age=600
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith(CHAT_PREFIX + "/"):
            await self._cors(scope, receive, send)
        else:
            await self._app(scope, receive, send)


def _chat_errors(*statuses: int) -> ErrorResponses:
    responses = error_responses(*statuses)
    responses[429] = {"model": ErrorResponse, "description": "Too many messages from this visitor; retry shortly"}
    return responses


async def _require_business(deps: Deps, business_id: str) -> None:
    structlog.contextvars.bind_contextvars(business_id=business_id)
    if await deps.businesses.get(business_id) is None:
        raise NotFound("unknown business")


def chat_router(limit: VisitorRateLimit) -> APIRouter:
    """``limit`` is this app's own: each process limits on its own."""
    router = APIRouter(prefix=CHAT_PREFIX + "/{business_id}", tags=[TAG])

    @router.post(
        "/messages",
        status_code=status.HTTP_201_CREATED,
        responses=_chat_errors(400, 404, 413, 422, 503),
        summary="Post a customer's message (public; used by the chat widget)",
    )
    async def post_message(
        business_id: BusinessPath, body: ChatMessageRequest, deps: Deps
    ) -> ChatMessageCreatedResponse:
        """Creates the visitor's conversation `chat-<visitor_id>` on first use."""
        if not limit.allow((business_id, body.visitor_id)):
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail=f"too many messages: at most {limit.burst} per {limit.window_s:g} s per visitor; retry shortly",
                headers={"Retry-After": "1"},
            )
        await _require_business(deps, business_id)
        conversation_id = chat_conversation_id(body.visitor_id)
        structlog.contextvars.bind_contextvars(conversation_id=conversation_id)
        if await deps.conversations.get(business_id, conversation_id) is None:
            # Two first messages at once both create it; the later subject wins, which is harmless.
            fields = ConversationFields(channel=CHAT_CHANNEL, subject=body.content[:SUBJECT_LENGTH], status="open")
            await deps.conversations.upsert(business_id, conversation_id, fields)
        message = await deps.messages.add(
            business_id, conversation_id, author="customer", content=body.content, image_url=body.image_url
        )
        deps.metrics.chat_messages.inc()
        return ChatMessageCreatedResponse(
            message_id=message.message_id, conversation_id=conversation_id, created_at=message.created_at
        )

    @router.get(
        "/messages",
        responses=error_responses(404, 422, 503),
        summary="The visitor's own messages, oldest first (public; used by the chat widget)",
    )
    async def visitor_messages(
        business_id: BusinessPath,
        visitor_id: Annotated[VisitorId, Query(description="The widget's visitor id")],
        deps: Deps,
        limit: Annotated[int, Query(ge=1, le=MAX_LISTED, description="At most this many, the latest")] = 200,
    ) -> list[MessageResponse]:
        await _require_business(deps, business_id)
        messages = await deps.messages.in_conversation(business_id, chat_conversation_id(visitor_id), limit)
        return [MessageResponse.of(m) for m in messages]

    return router
