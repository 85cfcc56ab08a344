"""Routes of customers, the people in a widget's context."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Path, Response, status

from shared.ids import Id
from store.auth import BusinessId
from store.dependencies import Deps
from store.errors import NotFound
from store.repositories.customers import CustomerFields
from store.routes.responses import error_responses
from store.schemas import CustomerRequest, CustomerResponse

TAG = "customers"

CustomerId = Annotated[Id, Path(description="The business's own id of the customer")]


def customers_router() -> APIRouter:
    router = APIRouter(prefix="/v1/businesses/{business_id}/customers", tags=[TAG])

    @router.put(
        "/{customer_id}",
        responses={
            201: {"model": CustomerResponse, "description": "Created"},
            **error_responses(400, 401, 403, 413, 422, 503),
        },
        summary="Create or replace a customer",
    )
    async def put_customer(
        business_id: BusinessId, customer_id: CustomerId, body: CustomerRequest, deps: Deps, response: Response
    ) -> CustomerResponse:
        """Fields left out are stored as null (attributes as `{}`): this replaces the customer."""
        structlog.contextvars.bind_contextvars(customer_id=customer_id)
        fields = CustomerFields(email=body.email, name=body.name, phone=body.phone, attributes=body.attributes)
        customer, created = await deps.customers.upsert(business_id, customer_id, fields)
        response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return CustomerResponse.of(customer)

    @router.get("/{customer_id}", responses=error_responses(401, 403, 404, 422, 503), summary="Read a customer")
    async def read_customer(business_id: BusinessId, customer_id: CustomerId, deps: Deps) -> CustomerResponse:
        structlog.contextvars.bind_contextvars(customer_id=customer_id)
        customer = await deps.customers.get(business_id, customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id!r} not found")
        return CustomerResponse.of(customer)

    return router
