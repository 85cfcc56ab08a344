"""Businesses and API keys: the admin creates and issues; keys are stored only as hashes."""

from __future__ import annotations

import hashlib

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import API_KEYS, BUSINESSES, Document
from tests.store.conftest import ADMIN, Tenant, unique_id


async def test_admin_creates_a_business_and_receives_its_first_key(
    client: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    business_id = unique_id("biz")
    response = await client.post("/v1/businesses", json={"business_id": business_id, "name": "Acme"}, headers=ADMIN)

    assert response.status_code == 201
    body = response.json()
    assert body["business_id"] == business_id
    assert body["name"] == "Acme"
    assert body["created_at"]
    assert body["api_key"].startswith("sk_")
    stored = await db[BUSINESSES].find_one({"_id": business_id})
    assert stored is not None
    assert {k: stored[k] for k in ("business_id", "name")} == {"business_id": business_id, "name": "Acme"}


async def test_only_the_sha256_of_a_key_is_stored(tenant: Tenant, db: AsyncDatabase[Document]) -> None:
    digest = hashlib.sha256(tenant.api_key.encode()).hexdigest()
    stored = await db[API_KEYS].find_one({"_id": digest})
    assert stored is not None
    assert stored["business_id"] == tenant.business_id
    assert tenant.api_key not in str(stored)


async def test_creating_an_existing_business_is_a_conflict(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        "/v1/businesses", json={"business_id": tenant.business_id, "name": "Again"}, headers=ADMIN
    )
    assert response.status_code == 409
    assert response.json() == {"detail": f"business {tenant.business_id!r} already exists"}


async def test_a_business_key_cannot_create_businesses(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        "/v1/businesses", json={"business_id": unique_id("biz"), "name": "Evil"}, headers=tenant.headers
    )
    assert response.status_code == 403
    assert "admin key" in response.json()["detail"]


async def test_a_request_without_a_key_is_unauthorised(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/businesses", json={"business_id": unique_id("biz"), "name": "Acme"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "missing API key" in response.json()["detail"]


async def test_an_unknown_key_is_unauthorised(client: httpx.AsyncClient, tenant: Tenant) -> None:
    unknown = {"Authorization": "Bearer sk_not-a-real-key"}
    for response in (
        await client.post("/v1/businesses", json={"business_id": unique_id("biz"), "name": "X"}, headers=unknown),
        await client.get(tenant.path(), headers=unknown),
    ):
        assert response.status_code == 401
        assert response.json() == {"detail": "unknown API key"}


async def test_authentication_comes_before_body_validation(client: httpx.AsyncClient) -> None:
    """An anonymous caller learns nothing about the schema."""
    response = await client.post("/v1/businesses", json={"unexpected": True})
    assert response.status_code == 401


async def test_admin_issues_another_key_and_both_keys_work(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(tenant.path("/api-keys"), headers=ADMIN)
    assert response.status_code == 201
    second = Tenant(tenant.business_id, response.json()["api_key"])
    assert second.api_key != tenant.api_key

    for key_holder in (tenant, second):
        read = await client.get(tenant.path(), headers=key_holder.headers)
        assert read.status_code == 200
        assert read.json()["business_id"] == tenant.business_id


async def test_issuing_a_key_for_an_unknown_business_is_not_found(client: httpx.AsyncClient) -> None:
    business_id = unique_id("nobody")
    response = await client.post(f"/v1/businesses/{business_id}/api-keys", headers=ADMIN)
    assert response.status_code == 404
    assert response.json() == {"detail": f"business {business_id!r} not found"}


async def test_a_business_key_cannot_issue_keys(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(tenant.path("/api-keys"), headers=tenant.headers)
    assert response.status_code == 403


async def test_a_business_reads_itself(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get(tenant.path(), headers=tenant.headers)
    assert response.status_code == 200
    assert response.json()["business_id"] == tenant.business_id
    assert response.json()["name"] == "Acme"
    assert "api_key" not in response.json()


async def test_the_admin_key_is_not_a_business_key(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get(tenant.path("/widgets"), headers=ADMIN)
    assert response.status_code == 403
    assert "admin key cannot be used on business routes" in response.json()["detail"]


async def test_business_creation_validates_its_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/businesses", json={"business_id": "has space", "name": ""}, headers=ADMIN)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "body.business_id: expected an id of 1-128 characters" in detail
    assert "body.name: string should have at least 1 character" in detail
