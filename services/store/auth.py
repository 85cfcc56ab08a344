"""Who may call what: the admin key for admin routes, a business key for its own business.

401 means the caller is unknown (no key, or a key that matches nothing); 403
means it is known but not allowed here (another business's key, the admin key
on a business route, or a business key on an admin route).
"""

from __future__ import annotations

import hmac
from typing import Annotated

import structlog
from fastapi import Depends, HTTPException, Path, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.ids import Id
from store.dependencies import Deps, StoreDependencies

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`: the admin key or a business key")

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _unauthenticated(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _forbidden(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=detail)


def _presented_key(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise _unauthenticated("missing API key: send `Authorization: Bearer <key>`")
    return credentials.credentials


def _is_admin_key(key: str, deps: StoreDependencies) -> bool:
    expected = deps.settings.store_admin_key.get_secret_value()
    return hmac.compare_digest(key.encode("utf-8"), expected.encode("utf-8"))


async def require_admin(deps: Deps, credentials: Credentials) -> None:
    key = _presented_key(credentials)
    if _is_admin_key(key, deps):
        return
    if await deps.businesses.business_for_key(key) is not None:
        raise _forbidden("this route needs the admin key; a business key cannot use it")
    raise _unauthenticated("unknown API key")


async def require_business(
    business_id: Annotated[Id, Path(description="The business the route acts on")],
    deps: Deps,
    credentials: Credentials,
) -> str:
    """Admit a key of ``business_id`` only, and return that id."""
    key = _presented_key(credentials)
    if _is_admin_key(key, deps):
        raise _forbidden(f"the admin key cannot be used on business routes; use an API key of {business_id!r}")
    owner = await deps.businesses.business_for_key(key)
    if owner is None:
        raise _unauthenticated("unknown API key")
    if owner != business_id:
        raise _forbidden(f"this API key does not grant access to business {business_id!r}")
    structlog.contextvars.bind_contextvars(business_id=business_id)
    return business_id


BusinessId = Annotated[str, Depends(require_business)]
