"""Bad input always gets a 4xx with one clear ``detail`` sentence, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from tests.store.conftest import MAX_BODY_BYTES, WIDGET_CODE, Tenant


async def test_a_body_that_is_not_json_is_a_400(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        tenant.path("/widgets"),
        content=b'{"name": "CRM", "code": ',
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("request body is not valid JSON: Expecting value (at character ")


async def test_json_without_a_content_type_is_still_parsed(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.put(tenant.path("/customers/c"), content=b'{"name": "Ada"}', headers=tenant.headers)
    assert response.status_code == 201
    assert response.json()["name"] == "Ada"


async def test_a_body_sent_as_a_form_is_a_clear_422(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.put(tenant.path("/customers/c"), data={"name": "Ada"}, headers=tenant.headers)
    assert response.status_code == 422
    assert response.json()["detail"] == "body: expected a JSON object sent with Content-Type: application/json"


async def test_a_json_body_that_is_not_an_object_is_a_422(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.put(tenant.path("/customers/c"), json=["Ada"], headers=tenant.headers)
    assert response.status_code == 422
    assert response.json()["detail"] == "body: expected a mapping"


async def test_a_declared_oversize_body_is_a_413(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        tenant.path("/widgets"),
        json={"name": "CRM", "code": WIDGET_CODE + "#" * MAX_BODY_BYTES},
        headers=tenant.headers,
    )
    assert response.status_code == 413
    assert response.json() == {"detail": f"request body is larger than the limit of {MAX_BODY_BYTES} bytes"}


async def test_a_streamed_oversize_body_is_a_413(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """A chunked upload declares no length; the bytes are counted as they arrive."""
    chunks_sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        for _ in range(100):
            chunks_sent += 1
            yield b" " * 16_384

    response = await client.post(
        tenant.path("/widgets"), content=chunks(), headers={**tenant.headers, "Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert "larger than the limit" in response.json()["detail"]


async def test_a_malformed_content_length_is_a_400(client: httpx.AsyncClient, tenant: Tenant) -> None:
    request = client.build_request("PUT", tenant.path("/customers/c"), content=b"{}", headers=tenant.headers)
    request.headers["Content-Length"] = "ten"
    response = await client.send(request)
    assert response.status_code == 400
    assert response.json() == {"detail": "the Content-Length header is not a non-negative integer"}


async def test_a_body_just_under_the_limit_is_accepted(client: httpx.AsyncClient, tenant: Tenant) -> None:
    padding = "x" * (MAX_BODY_BYTES - 100)
    response = await client.put(
        tenant.path("/customers/c"), json={"attributes": {"p": padding}}, headers=tenant.headers
    )
    assert response.status_code == 201


async def test_invalid_id_characters_in_the_path_are_a_422(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for path in ("/widgets/bad%20id", "/conversations/a%3Ab", "/customers/" + "x" * 129):
        response = await client.get(tenant.path(path), headers=tenant.headers)
        assert response.status_code == 422, path
        detail = response.json()["detail"]
        assert detail.startswith("path.")
        assert detail.endswith(": expected an id of 1-128 characters from A-Z, a-z, 0-9, '_' and '-'")


async def test_an_invalid_business_id_in_the_path_is_a_422(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get("/v1/businesses/bad.id/widgets", headers=tenant.headers)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("path.business_id: expected an id")


async def test_invalid_id_characters_in_the_body_are_a_422(client: httpx.AsyncClient, tenant: Tenant) -> None:
    widget = await client.post(
        tenant.path("/widgets"),
        json={"widget_id": "no/slash", "name": "W", "code": WIDGET_CODE},
        headers=tenant.headers,
    )
    conversation = await client.put(
        tenant.path("/conversations/conv"), json={"customer_id": "ünïcode"}, headers=tenant.headers
    )
    assert widget.status_code == 422
    assert widget.json()["detail"].startswith("body.widget_id: expected an id")
    assert conversation.status_code == 422
    assert conversation.json()["detail"].startswith("body.customer_id: expected an id")


async def test_an_unknown_route_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/nothing")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_a_method_the_path_lacks_is_a_405_listing_every_method_it_has(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Starlette names only the first route on a path; GET, PATCH and DELETE of a widget are three routes."""
    response = await client.put(tenant.path("/widgets/w1"), json={}, headers=tenant.headers)

    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    assert response.headers["allow"] == "DELETE, GET, PATCH"
