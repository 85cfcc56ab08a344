"""Server-Sent Events: the wire format, and the loop that feeds one client from its subscription.

Each event is ``id:``, ``event:`` and a single ``data:`` line of JSON (JSON
text never contains a raw line break). Comment lines keep the connection and
any proxy in between from timing out; ``EventSource`` ignores them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from fastapi.encoders import jsonable_encoder

from store.push.hub import PushEvent, Subscription, SubscriptionClosed

log = structlog.get_logger(__name__)

MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

# Sent first, once the subscription is in place: from then on no event is missed.
CONNECTED = b": connected\n\n"
KEEP_ALIVE = b": keep-alive\n\n"


def encode_event(event_id: str, name: str, data: str) -> bytes:
    return f"id: {event_id}\nevent: {name}\ndata: {data}\n\n".encode()


def encode_push_event(event: PushEvent) -> bytes:
    return encode_event(event.id, event.name, event.data)


def encode_stored_sidebar(event_id: str, sidebar: dict[str, Any]) -> bytes:
    data = json.dumps(jsonable_encoder(sidebar), separators=(",", ":"), ensure_ascii=False)
    return encode_event(event_id, "sidebar", data)


async def live_events(
    subscription: Subscription, is_disconnected: Callable[[], Awaitable[bool]], *, keep_alive_s: float
) -> AsyncIterator[bytes]:
    """The subscription's events as they come, with a keep-alive after each quiet ``keep_alive_s``,
    until the client disconnects or the hub ends the subscription."""
    while not await is_disconnected():
        try:
            event = await subscription.next(keep_alive_s)
        except SubscriptionClosed:
            log.info("stream.ended", reason="too far behind" if subscription.overflowed else "store closing")
            return
        yield KEEP_ALIVE if event is None else encode_push_event(event)
