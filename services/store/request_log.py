"""One summary log line and the HTTP metrics per request, as pure ASGI middleware.

The route label is the matched route's template (``/v1/businesses/{business_id}/widgets``),
never the raw path, so ids never become metric labels. Handlers bind
``business_id``, ``conversation_id`` and ``widget_id`` to the log context as
they learn them; the summary line carries them.
"""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.metrics import UNMATCHED_ROUTE, StoreMetrics

log = structlog.get_logger(__name__)

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestLog:
    def __init__(self, app: ASGIApp, *, metrics: StoreMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        structlog.contextvars.clear_contextvars()
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, send_and_record)
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"] if scope["method"] in _KNOWN_METHODS else "OTHER"
            route = _route_template(scope)
            self._metrics.observe_request(method, route, status, elapsed)
            log.info("http.request", method=method, route=route, status=status, duration_ms=round(elapsed * 1000, 2))
            structlog.contextvars.clear_contextvars()


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE
