"""Routes of widget secrets: set, list names, delete. Write-only: no route returns a value.

The store seals a value as it arrives and keeps only the sealed token; widgets
read the plaintext through ``secret(name)`` in the executor.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status
from pydantic import AfterValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from shared.secrets import SecretBox
from store.auth import BusinessId
from store.dependencies import Deps
from store.errors import Conflict, NotFound, StoreError
from store.routes.responses import error_responses
from store.schemas import SecretRequest, SecretResponse

TAG = "secrets"

# Every widget job carries all of its business's secrets, and WidgetJob.secrets takes at most 100.
MAX_SECRETS = 100
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _secret_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise PydanticCustomError(
            "secret_name", "expected 1-64 characters from A-Z, a-z, 0-9 and '_', not starting with a digit"
        )
    return value


SecretName = Annotated[
    str,
    Path(description="`[A-Za-z_][A-Za-z0-9_]{0,63}`: the name widgets pass to `secret(name)`"),
    AfterValidator(_secret_name),
    WithJsonSchema({"type": "string", "pattern": f"^{_NAME.pattern}$"}),
]


class SecretsNotConfigured(StoreError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self) -> None:
        super().__init__("secrets are not configured on this store (set SECRETS_KEY)")


async def _secret_box(business_id: BusinessId, deps: Deps) -> SecretBox:
    """The sealing box, once the caller is authenticated: a store without SECRETS_KEY has secrets off."""
    if deps.secret_box is None:
        raise SecretsNotConfigured
    return deps.secret_box


Box = Annotated[SecretBox, Depends(_secret_box)]


def secrets_router() -> APIRouter:
    router = APIRouter(prefix="/v1/businesses/{business_id}/secrets", tags=[TAG])

    @router.put(
        "/{name}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(400, 401, 403, 409, 413, 422, 503),
        summary="Set a secret (write-only)",
    )
    async def set_secret(
        business_id: BusinessId, name: SecretName, body: SecretRequest, box: Box, deps: Deps
    ) -> Response:
        """Creates or replaces the secret. The value is sealed at once and never returned."""
        existing = {entry.name for entry in await deps.secrets.entries(business_id)}
        if name not in existing and len(existing) >= MAX_SECRETS:
            raise _too_many()
        sealed = box.seal(business_id, name, body.value.get_secret_value())
        created = await deps.secrets.set(business_id, name, sealed)
        # Two concurrent creates can both pass the check above; the one that overshoots backs out.
        if created and len(await deps.secrets.entries(business_id)) > MAX_SECRETS:
            await deps.secrets.delete(business_id, name)
            raise _too_many()
        await deps.events.catalog_changed(business_id, "secrets")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.get("", responses=error_responses(401, 403, 422, 503), summary="List secret names")
    async def list_secrets(business_id: BusinessId, _: Box, deps: Deps) -> list[SecretResponse]:
        """Names and when each was last set, by name; never a value."""
        return [SecretResponse.of(entry) for entry in await deps.secrets.entries(business_id)]

    @router.delete(
        "/{name}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(401, 403, 404, 422, 503),
        summary="Delete a secret",
    )
    async def delete_secret(business_id: BusinessId, name: SecretName, _: Box, deps: Deps) -> Response:
        if not await deps.secrets.delete(business_id, name):
            raise NotFound(f"secret {name!r} not found")
        await deps.events.catalog_changed(business_id, "secrets")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router


def _too_many() -> Conflict:
    return Conflict(f"a business can have at most {MAX_SECRETS} secrets; delete one before adding another")
