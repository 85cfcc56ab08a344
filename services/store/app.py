"""The store's composition root: build the FastAPI app from settings and dependencies.

``create_app(settings)`` opens its dependencies in the app's lifespan (what
uvicorn runs). ``create_app(settings, dependencies=deps)`` uses dependencies
opened by the caller with ``open_store``, for in-process tests where no
lifespan runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from store.body_limit import BodySizeLimit
from store.dependencies import StoreDependencies, open_store
from store.errors import install_error_handlers
from store.metrics import StoreMetrics
from store.request_log import RequestLog
from store.routes.businesses import businesses_router
from store.routes.chat import PublicChatCors, VisitorRateLimit, chat_router
from store.routes.conversations import conversations_router
from store.routes.customers import customers_router
from store.routes.messages import messages_router
from store.routes.pages import mount_pages
from store.routes.secrets import secrets_router
from store.routes.sidebars import sidebars_router
from store.routes.stream import stream_router
from store.routes.system import system_router
from store.routes.widgets import widgets_router
from store.settings import StoreSettings

log = structlog.get_logger(__name__)

DESCRIPTION = """
Businesses, API keys, customers and conversations (the widget context source),
widgets with Run Test, the sidebars the orchestrator assembled and their live
stream, conversation messages, and the public chat API of the customer widget.

Authenticate with `Authorization: Bearer <key>`: the admin key for creating
businesses and issuing keys, a business key for everything under
`/v1/businesses/{business_id}/` (the stream also takes a stream token). The
chat API under `/v1/chat/` is public. Errors are `{"detail": "<one sentence>"}`.
"""

TAGS = [
    {"name": "businesses", "description": "Businesses and their API keys."},
    {"name": "customers", "description": "Customers: part of each widget's context."},
    {
        "name": "conversations",
        "description": "Conversations: the root of a widget's context; opening one runs the sidebar. "
        "Their messages, and the public chat API of the customer widget (no key, CORS for any origin).",
    },
    {"name": "widgets", "description": "Widgets: business-written Python, and Run Test through an executor."},
    {"name": "secrets", "description": "Secrets widgets read with `secret(name)`: write-only, stored sealed."},
    {
        "name": "sidebars",
        "description": "Sidebars assembled by the orchestrator, read or streamed live (Server-Sent Events).",
    },
    {"name": "system", "description": "Liveness and metrics."},
]


def create_app(settings: StoreSettings, *, dependencies: StoreDependencies | None = None) -> FastAPI:
    metrics = dependencies.metrics if dependencies is not None else StoreMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_store(settings, metrics=metrics) as opened:
            app.state.dependencies = opened
            log.info("store.ready")
            yield
        log.info("store.closed")

    app = FastAPI(
        title="Sidebar widgets store",
        version="1",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan if dependencies is None else None,
        # Clients that send JSON without a Content-Type still get it parsed.
        strict_content_type=False,
    )
    if dependencies is not None:
        app.state.dependencies = dependencies
    install_error_handlers(app)
    for router in (
        businesses_router(),
        customers_router(),
        conversations_router(),
        sidebars_router(),
        messages_router(),
        stream_router(),
        chat_router(VisitorRateLimit(burst=settings.store_chat_burst, window_s=settings.store_chat_window_s)),
        widgets_router(),
        secrets_router(),
        system_router(metrics),
    ):
        app.include_router(router)
    mount_pages(app)
    # The last added middleware runs first: log every request, including the ones refused for size.
    app.add_middleware(BodySizeLimit, max_bytes=settings.store_max_body_bytes, timeout_s=settings.store_body_timeout_s)
    app.add_middleware(PublicChatCors)
    app.add_middleware(RequestLog, metrics=metrics)
    return app
