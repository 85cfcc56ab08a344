"""A lone surrogate (the JSON escape ``\\ud800``) in any text of a request is a 422 naming the field, never a 500.

Python decodes the escape, but the result has no UTF-8 form, so MongoDB, the JSON
response and the sealing of secrets would each fail on it.
"""

from __future__ import annotations

import base64
import json
import os

import httpx
import pytest
from pydantic import SecretStr

from store.dependencies import StoreDependencies
from store.settings import StoreSettings
from tests.infra import Infra
from tests.store.conftest import ADMIN, WIDGET_CODE, Tenant, store_settings, unique_id

LONE = "\ud800"
RULE = "text must be valid Unicode (no lone surrogates)"
KEY_RULE = "keys must be valid Unicode (no lone surrogates)"
VISITOR = "visitor-0123456789abcdef"


@pytest.fixture
def settings(infra: Infra) -> StoreSettings:
    """Secrets are on, so their route validates the value."""
    return store_settings(infra).model_copy(
        update={"secrets_key": SecretStr(base64.b64encode(os.urandom(32)).decode())}
    )


def escaped(body: object) -> bytes:
    """JSON with every non-ASCII character escaped, as a browser's JSON.stringify sends a lone surrogate."""
    return json.dumps(body).encode("ascii")


# (method, path under the business or from "/v1/", body, the detail: the place named, then the rule)
CASES = [
    ("PUT", "/customers/c1", {"name": f"Ada{LONE}"}, f"body.name: {RULE}"),
    ("PUT", "/customers/c1", {"email": LONE}, f"body.email: {RULE}"),
    (
        "PUT",
        "/customers/c1",
        {"attributes": {"notes": ["ok", {"text": LONE}]}},
        f"body.attributes.notes[1].text: {RULE}",
    ),
    ("PUT", "/customers/c1", {"attributes": {"a": [{LONE: 1}]}}, f"body.attributes.a[0]: {KEY_RULE}"),
    ("PUT", "/conversations/v1", {"subject": LONE, "channel": "email"}, f"body.subject: {RULE}"),
    ("PUT", "/conversations/v1", {"status": LONE}, f"body.status: {RULE}"),
    ("POST", "/widgets", {"name": LONE, "code": WIDGET_CODE}, f"body.name: {RULE}"),
    ("POST", "/widgets", {"name": "W", "code": f"# {LONE}\n{WIDGET_CODE}"}, f"body.code: {RULE}"),
    ("PATCH", "/widgets/w1", {"code": f"'{LONE}'"}, f"body.code: {RULE}"),
    ("POST", "/widgets/w1/test", {"conversation_id": "v1", "code": LONE}, f"body.code: {RULE}"),
    ("PUT", "/secrets/CRM_KEY", {"value": f"sk_{LONE}"}, f"body.value: {RULE}"),
    ("POST", "/v1/chat/{b}/messages", {"visitor_id": VISITOR, "content": f"hi {LONE}"}, f"body.content: {RULE}"),
    ("POST", "/v1/businesses", {"business_id": "b-lone", "name": LONE}, f"body.name: {RULE}"),
]


@pytest.mark.parametrize(("method", "path", "body", "detail"), CASES, ids=[c[3].split(":")[0] for c in CASES])
async def test_a_lone_surrogate_is_a_422_naming_the_field(
    client: httpx.AsyncClient,
    tenant: Tenant,
    deps: StoreDependencies,
    method: str,
    path: str,
    body: dict[str, object],
    detail: str,
) -> None:
    url = path.format(b=tenant.business_id) if path.startswith("/v1/") else tenant.path(path)
    headers = ADMIN if path == "/v1/businesses" else {} if "/chat/" in path else tenant.headers

    response = await client.request(
        method, url, content=escaped(body), headers={**headers, "Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text
    assert response.json() == {"detail": detail}
    counted = {
        sample.labels["status"]
        for metric in deps.metrics.http_requests.collect()
        for sample in metric.samples
        if sample.name == "store_http_requests_total"
    }
    assert "422" in counted
    assert not [status for status in counted if status.startswith("5")]


async def test_a_public_chat_message_with_a_lone_surrogate_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    visitor = unique_id("visitor-0123456")
    body = escaped({"visitor_id": visitor, "content": f"{LONE} where is my order?"})

    refused = await client.post(f"/v1/chat/{tenant.business_id}/messages", content=body)
    listed = await client.get(f"/v1/chat/{tenant.business_id}/messages", params={"visitor_id": visitor})

    assert refused.status_code == 422
    assert (listed.status_code, listed.json()) == (200, [])


async def test_a_valid_surrogate_pair_is_ordinary_text(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """``\\ud83d\\ude00`` is one character (😀) once decoded, stored and returned as such."""
    response = await client.put(
        tenant.path("/customers/emoji"),
        content=escaped({"name": "Ada 😀", "attributes": {"mood": "😀"}}),
        headers=tenant.headers,
    )

    assert response.status_code == 201, response.text
    assert (response.json()["name"], response.json()["attributes"]) == ("Ada 😀", {"mood": "😀"})


async def test_a_field_name_with_a_lone_surrogate_is_a_422(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """pydantic refuses the name before any field is looked at, so the body as a whole is named."""
    response = await client.put(tenant.path("/customers/c1"), content=escaped({LONE: 1}), headers=tenant.headers)

    assert response.status_code == 422
    assert response.json()["detail"].startswith("body: ")
