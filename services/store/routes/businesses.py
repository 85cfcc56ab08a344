"""Routes of businesses and their API keys: admin creates and issues, a business reads itself."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Path, status

from shared.ids import Id
from store.auth import BusinessId, require_admin
from store.dependencies import Deps
from store.errors import NotFound
from store.routes.responses import error_responses
from store.schemas import ApiKeyResponse, BusinessResponse, CreateBusinessRequest, CreatedBusinessResponse

TAG = "businesses"


def businesses_router() -> APIRouter:
    router = APIRouter(prefix="/v1/businesses", tags=[TAG])

    @router.post(
        "",
        status_code=status.HTTP_201_CREATED,
        dependencies=[Depends(require_admin)],
        responses=error_responses(400, 401, 403, 409, 413, 422, 503),
        summary="Create a business and its first API key (admin)",
    )
    async def create_business(body: CreateBusinessRequest, deps: Deps) -> CreatedBusinessResponse:
        structlog.contextvars.bind_contextvars(business_id=body.business_id)
        business = await deps.businesses.create(body.business_id, body.name)
        key = await deps.businesses.issue_key(business.business_id)
        return CreatedBusinessResponse(**BusinessResponse.of(business).model_dump(), api_key=key)

    @router.post(
        "/{business_id}/api-keys",
        status_code=status.HTTP_201_CREATED,
        dependencies=[Depends(require_admin)],
        responses=error_responses(401, 403, 404, 422, 503),
        summary="Issue another API key for a business (admin)",
    )
    async def issue_api_key(
        business_id: Annotated[Id, Path(description="The business to issue a key for")], deps: Deps
    ) -> ApiKeyResponse:
        structlog.contextvars.bind_contextvars(business_id=business_id)
        if await deps.businesses.get(business_id) is None:
            raise NotFound(f"business {business_id!r} not found")
        return ApiKeyResponse(api_key=await deps.businesses.issue_key(business_id))

    @router.get("/{business_id}", responses=error_responses(401, 403, 404, 422, 503), summary="Read the business")
    async def read_business(business_id: BusinessId, deps: Deps) -> BusinessResponse:
        business = await deps.businesses.get(business_id)
        if business is None:
            raise NotFound(f"business {business_id!r} not found")
        return BusinessResponse.of(business)

    return router
