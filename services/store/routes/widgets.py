"""Routes of widgets: create, list, read, update, delete, and Run Test."""

from __future__ import annotations

import uuid
from typing import Annotated, cast

import structlog
from fastapi import APIRouter, Path, Response, status

from shared.ids import Id
from store.auth import BusinessId
from store.code_check import check_widget_code
from store.dependencies import Deps
from store.errors import NotFound
from store.repositories.widgets import Widget, WidgetChanges, WidgetDraft
from store.routes.responses import code_check_responses, error_responses
from store.schemas import TestRunRequest, TestRunResponse, WidgetCreateRequest, WidgetPatchRequest, WidgetResponse

TAG = "widgets"

WidgetId = Annotated[Id, Path(description="The widget's id within the business")]


async def _existing_widget(deps: Deps, business_id: str, widget_id: str) -> Widget:
    widget = await deps.widgets.get(business_id, widget_id)
    if widget is None:
        raise NotFound(f"widget {widget_id!r} not found")
    return widget


async def _conversation_to_test(deps: Deps, business_id: str, body: TestRunRequest) -> str:
    if body.conversation_id is not None:
        return body.conversation_id
    assert body.public_id is not None  # the request model demands exactly one of the two
    conversation = await deps.conversations.by_public_id(business_id, body.public_id)
    if conversation is None:
        raise NotFound(f"no conversation has public id {body.public_id!r}")
    return conversation.conversation_id


def widgets_router() -> APIRouter:
    router = APIRouter(prefix="/v1/businesses/{business_id}/widgets", tags=[TAG])

    @router.post(
        "",
        status_code=status.HTTP_201_CREATED,
        responses={**error_responses(400, 401, 403, 409, 413, 503), **code_check_responses()},
        summary="Create a widget",
    )
    async def create_widget(business_id: BusinessId, body: WidgetCreateRequest, deps: Deps) -> WidgetResponse:
        """The code must compile and define `get_sidebar_data(context)` at top level."""
        widget_id = body.widget_id or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(widget_id=widget_id)
        check_widget_code(body.code)
        draft = WidgetDraft(
            name=body.name, code=body.code, active=body.active, position=body.position, timeout_s=body.timeout_s
        )
        created = await deps.widgets.create(business_id, widget_id, draft)
        await deps.events.catalog_changed(business_id, "widgets")
        return WidgetResponse.of(created)

    @router.get("", responses=error_responses(401, 403, 422, 503), summary="List widgets in position order")
    async def list_widgets(business_id: BusinessId, deps: Deps) -> list[WidgetResponse]:
        return [WidgetResponse.of(w) for w in await deps.widgets.in_position_order(business_id)]

    @router.get("/{widget_id}", responses=error_responses(401, 403, 404, 422, 503), summary="Read a widget")
    async def read_widget(business_id: BusinessId, widget_id: WidgetId, deps: Deps) -> WidgetResponse:
        structlog.contextvars.bind_contextvars(widget_id=widget_id)
        return WidgetResponse.of(await _existing_widget(deps, business_id, widget_id))

    @router.patch(
        "/{widget_id}",
        responses={**error_responses(400, 401, 403, 404, 413, 503), **code_check_responses()},
        summary="Update some of a widget's fields",
    )
    async def update_widget(
        business_id: BusinessId, widget_id: WidgetId, body: WidgetPatchRequest, deps: Deps
    ) -> WidgetResponse:
        structlog.contextvars.bind_contextvars(widget_id=widget_id)
        if body.code is not None:
            check_widget_code(body.code)
        changes = cast(WidgetChanges, body.model_dump(exclude_unset=True))
        widget = await deps.widgets.update(business_id, widget_id, changes)
        if widget is None:
            raise NotFound(f"widget {widget_id!r} not found")
        await deps.events.catalog_changed(business_id, "widgets")
        return WidgetResponse.of(widget)

    @router.delete(
        "/{widget_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(401, 403, 404, 422, 503),
        summary="Delete a widget",
    )
    async def delete_widget(business_id: BusinessId, widget_id: WidgetId, deps: Deps) -> Response:
        structlog.contextvars.bind_contextvars(widget_id=widget_id)
        if not await deps.widgets.delete(business_id, widget_id):
            raise NotFound(f"widget {widget_id!r} not found")
        await deps.events.catalog_changed(business_id, "widgets")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post(
        "/{widget_id}/test",
        responses={**error_responses(400, 401, 403, 404, 413, 503, 504), **code_check_responses()},
        summary="Run Test: run the widget on a stored conversation through an executor",
    )
    async def run_test(
        business_id: BusinessId, widget_id: WidgetId, body: TestRunRequest, deps: Deps
    ) -> TestRunResponse:
        """Give `conversation_id` or `public_id`; `code` tests unsaved code instead of the stored code.
        The run takes the same path as a live one (a `widget.job` to an executor), with the widget's timeout."""
        structlog.contextvars.bind_contextvars(widget_id=widget_id)
        widget = await _existing_widget(deps, business_id, widget_id)
        if body.code is not None:
            check_widget_code(body.code)
        conversation_id = await _conversation_to_test(deps, business_id, body)
        structlog.contextvars.bind_contextvars(conversation_id=conversation_id)
        context = await deps.conversations.context(business_id, conversation_id)
        if context is None:
            raise NotFound(f"conversation {conversation_id!r} not found")
        code = body.code if body.code is not None else widget.code
        result = await deps.test_runs.run(widget, conversation_id, context, code)
        return TestRunResponse.of(result)

    return router
