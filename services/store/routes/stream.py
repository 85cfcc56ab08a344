"""The live stream of a business's sidebar events (Server-Sent Events), and the tokens browsers open it with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, status
from fastapi.responses import StreamingResponse

from shared.errors import TransientError
from shared.ids import Id
from store.auth import BusinessId, Credentials, require_business
from store.dependencies import Deps, StoreDependencies
from store.push.sse import (
    CONNECTED,
    HEADERS,
    MEDIA_TYPE,
    encode_push_event,
    encode_stored_sidebar,
    live_events,
)
from store.routes.responses import error_responses
from store.routes.sidebars import TAG
from store.schemas import StreamTokenResponse
from store.tokens import InvalidStreamToken

log = structlog.get_logger(__name__)

MAX_TOKEN_LENGTH = 1000
MAX_EVENT_ID_LENGTH = 100


def _unauthenticated(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def authorize_stream(
    business_id: Annotated[Id, Path(description="The business whose events to stream")],
    deps: Deps,
    credentials: Credentials,
    token: Annotated[
        str | None, Query(max_length=MAX_TOKEN_LENGTH, description="A stream token, for browsers' EventSource")
    ] = None,
) -> str:
    """A business key (as on every business route) or a stream token of this business."""
    if credentials is not None:
        return await require_business(business_id, deps, credentials)
    if token is None:
        raise _unauthenticated("missing credentials: send `Authorization: Bearer <business key>` or `?token=`")
    try:
        deps.stream_tokens.verify(token, business_id)
    except InvalidStreamToken as exc:
        raise _unauthenticated(str(exc)) from exc
    structlog.contextvars.bind_contextvars(business_id=business_id)
    return business_id


async def _stream(
    request: Request,
    deps: StoreDependencies,
    business_id: str,
    conversation_id: str | None,
    last_event_id: str | None,
) -> AsyncIterator[bytes]:
    """Subscribed here, not by the route: a generator that never starts (the client left first) holds nothing.
    The feed is already bound for the business, so every event from ``CONNECTED`` on reaches the subscription."""
    with deps.push.subscribe(business_id, conversation_id, last_event_id) as subscription:
        yield CONNECTED
        if subscription.replay is not None:
            for event in subscription.replay:
                yield encode_push_event(event)
        elif conversation_id is not None:
            try:
                sidebar = await deps.sidebars.latest(business_id, conversation_id)
            except TransientError as exc:
                # End the stream: EventSource reconnects and this read is tried again.
                log.warning("stream.sidebar_unavailable", error=str(exc))
                return
            if sidebar is not None:
                yield encode_stored_sidebar(subscription.start_id, sidebar)
        keep_alive_s = deps.settings.store_stream_keepalive_s
        async for chunk in live_events(subscription, request.is_disconnected, keep_alive_s=keep_alive_s):
            yield chunk


def stream_router() -> APIRouter:
    router = APIRouter(prefix="/v1/businesses/{business_id}", tags=[TAG])

    @router.get(
        "/stream",
        response_class=StreamingResponse,
        responses={
            200: {"content": {MEDIA_TYPE: {}}, "description": "Server-Sent Events: `widget` and `sidebar`"},
            **error_responses(401, 403, 422, 503),
        },
        summary="Live sidebar events of the business (Server-Sent Events)",
    )
    async def stream(
        request: Request,
        deps: Deps,
        business_id: Annotated[str, Depends(authorize_stream)],
        conversation_id: Annotated[Id | None, Query(description="Only this conversation's events")] = None,
        last_event_id: Annotated[
            str | None, Query(max_length=MAX_EVENT_ID_LENGTH, description="Resume after this id (first connect)")
        ] = None,
        last_event_id_header: Annotated[
            str | None, Header(alias="Last-Event-ID", max_length=MAX_EVENT_ID_LENGTH)
        ] = None,
    ) -> StreamingResponse:
        """`event: widget` carries a `sidebar.widget` body, `event: sidebar` a `sidebar.ready` body. With
        `conversation_id` the stream starts with the conversation's latest stored sidebar; `Last-Event-ID`
        (header, or `last_event_id` on the first connect) replays what this process still holds after it. A
        broker that cannot be reached is a 503."""
        if conversation_id is not None:
            structlog.contextvars.bind_contextvars(conversation_id=conversation_id)
        resume_after = last_event_id_header if last_event_id_header is not None else last_event_id
        # Here rather than in the stream: a broker that cannot bind is then a 503, not an empty 200.
        await deps.feed_bindings.watch(business_id)
        return StreamingResponse(
            _stream(request, deps, business_id, conversation_id, resume_after), media_type=MEDIA_TYPE, headers=HEADERS
        )

    @router.post(
        "/stream-tokens",
        status_code=status.HTTP_201_CREATED,
        responses=error_responses(401, 403, 422, 503),
        summary="Issue a short-lived token that opens this business's stream",
    )
    async def issue_stream_token(business_id: BusinessId, deps: Deps) -> StreamTokenResponse:
        """For browsers: `EventSource` cannot send the key, so pass the token as `?token=`. It is checked
        when a stream connects; an open stream outlives it."""
        issued = deps.stream_tokens.issue(business_id)
        return StreamTokenResponse(token=issued.token, expires_at=issued.expires_at)

    return router
