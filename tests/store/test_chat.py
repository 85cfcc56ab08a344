"""The public chat API and the agent's view of a conversation's messages."""

from __future__ import annotations

import secrets
from datetime import datetime

import httpx
import pytest

from store.dependencies import StoreDependencies
from store.routes.chat import VisitorRateLimit
from store.settings import StoreSettings
from tests.store.conftest import NewTenant, Tenant, create_tenant, store_client


def new_visitor() -> str:
    return secrets.token_urlsafe(18)  # 24 characters, as the widget makes them


def chat(tenant: Tenant, suffix: str = "/messages") -> str:
    return f"/v1/chat/{tenant.business_id}{suffix}"


async def post(client: httpx.AsyncClient, tenant: Tenant, visitor: str, content: str, **extra: str) -> httpx.Response:
    return await client.post(chat(tenant), json={"visitor_id": visitor, "content": content, **extra})


async def test_the_first_message_creates_the_visitor_conversation(client: httpx.AsyncClient, tenant: Tenant) -> None:
    visitor = new_visitor()
    content = "Where is my order? " * 10

    response = await post(client, tenant, visitor, content, image_url="https://shop.example/receipt.png")

    assert response.status_code == 201
    created = response.json()
    assert set(created) == {"message_id", "conversation_id", "created_at"}
    assert created["conversation_id"] == f"chat-{visitor}"
    conversation = (await client.get(tenant.path(f"/conversations/chat-{visitor}"), headers=tenant.headers)).json()
    assert conversation["channel"] == "chat"
    assert conversation["customer_id"] is None
    assert conversation["subject"] == content.strip()[:80]


async def test_later_messages_reuse_the_conversation_and_keep_its_subject(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    visitor = new_visitor()
    first = (await post(client, tenant, visitor, "First")).json()

    second = (await post(client, tenant, visitor, "Second")).json()

    assert second["conversation_id"] == first["conversation_id"]
    listed = await client.get(tenant.path("/conversations"), headers=tenant.headers)
    assert [c["conversation_id"] for c in listed.json()] == [first["conversation_id"]]
    assert listed.json()[0]["subject"] == "First"


async def test_a_visitor_reads_only_their_own_messages_oldest_first(client: httpx.AsyncClient, tenant: Tenant) -> None:
    me, someone_else = new_visitor(), new_visitor()
    await post(client, tenant, me, "one")
    await post(client, tenant, someone_else, "not mine")
    await post(client, tenant, me, "  two  ", image_url="http://img.example/a.png")

    response = await client.get(chat(tenant), params={"visitor_id": me})

    assert response.status_code == 200
    messages = response.json()
    assert [(m["content"], m["image_url"], m["author"]) for m in messages] == [
        ("one", None, "customer"),
        ("two", "http://img.example/a.png", "customer"),
    ]
    assert {m["conversation_id"] for m in messages} == {f"chat-{me}"}
    assert set(messages[0]) == {"message_id", "conversation_id", "author", "content", "image_url", "created_at"}


async def test_a_visitor_without_messages_gets_an_empty_list(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get(chat(tenant), params={"visitor_id": new_visitor()})

    assert (response.status_code, response.json()) == (200, [])


async def test_an_agent_reads_a_conversation_messages_with_the_business_key(
    client: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant, other = await new_tenant(), await new_tenant()
    visitor = new_visitor()
    posted = [(await post(client, tenant, visitor, text)).json() for text in ("hello", "anyone?")]
    path = tenant.path(f"/conversations/chat-{visitor}/messages")

    response = await client.get(path, headers=tenant.headers)

    assert response.status_code == 200
    assert [m["message_id"] for m in response.json()] == [p["message_id"] for p in posted]
    created = [datetime.fromisoformat(m["created_at"]) for m in response.json()]
    assert created == sorted(created)
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers=other.headers)).status_code == 403


async def test_the_agent_listing_of_an_unknown_conversation_is_404(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get(tenant.path("/conversations/nope/messages"), headers=tenant.headers)

    assert response.status_code == 404
    assert response.json() == {"detail": "conversation 'nope' not found"}


async def test_listings_return_the_latest_messages_up_to_the_limit(client: httpx.AsyncClient, tenant: Tenant) -> None:
    visitor = new_visitor()
    for text in ("a", "b", "c"):
        await post(client, tenant, visitor, text)

    visitor_view = await client.get(chat(tenant), params={"visitor_id": visitor, "limit": 2})
    agent_view = await client.get(
        tenant.path(f"/conversations/chat-{visitor}/messages"), params={"limit": 2}, headers=tenant.headers
    )

    assert [m["content"] for m in visitor_view.json()] == ["b", "c"]
    assert [m["content"] for m in agent_view.json()] == ["b", "c"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"visitor_id": "short", "content": "hi"},
            "body.visitor_id: expected 16-64 characters from A-Z, a-z, 0-9, '_' and '-'",
        ),
        (
            {"visitor_id": "has spaces in it, sadly", "content": "hi"},
            "body.visitor_id: expected 16-64 characters from A-Z, a-z, 0-9, '_' and '-'",
        ),
        ({"visitor_id": "v" * 20, "content": "   \n "}, "body.content: must not be empty"),
        ({"visitor_id": "v" * 20, "content": "x" * 4001}, "body.content: must be at most 4000 characters"),
        (
            {"visitor_id": "v" * 20, "content": "hi", "image_url": "javascript:alert(1)"},
            "body.image_url: must be an http or https URL",
        ),
        (
            {"visitor_id": "v" * 20, "content": "hi", "image_url": "https:///no-host"},
            "body.image_url: must be an http or https URL",
        ),
        (
            {"visitor_id": "v" * 20, "content": "hi", "image_url": "https://x.example/" + "a" * 2000},
            "body.image_url: must be at most 2000 characters",
        ),
        ({"visitor_id": "v" * 20}, "body.content: required field is missing"),
        ({"visitor_id": "v" * 20, "content": "hi", "author": "agent"}, "body.author: unknown field"),
    ],
    ids=[
        "short-visitor",
        "visitor-pattern",
        "blank-content",
        "long-content",
        "javascript-url",
        "no-host",
        "long-url",
        "missing-content",
        "extra-field",
    ],
)
async def test_invalid_messages_are_422_naming_the_field(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, str], detail: str
) -> None:
    response = await client.post(chat(tenant), json=body)

    assert response.status_code == 422
    assert response.json() == {"detail": detail}


async def test_content_of_exactly_4000_characters_after_trimming_is_accepted(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await post(client, tenant, new_visitor(), "  " + "x" * 4000 + "  ")

    assert response.status_code == 201


async def test_a_bad_visitor_id_in_the_listing_is_422(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get(chat(tenant), params={"visitor_id": "tiny"})

    assert response.status_code == 422
    assert response.json() == {"detail": "query.visitor_id: expected 16-64 characters from A-Z, a-z, 0-9, '_' and '-'"}


async def test_an_unknown_business_is_404(client: httpx.AsyncClient) -> None:
    path = "/v1/chat/no-such-business/messages"

    posted = await client.post(path, json={"visitor_id": new_visitor(), "content": "hi"})
    listed = await client.get(path, params={"visitor_id": new_visitor()})

    assert (posted.status_code, posted.json()) == (404, {"detail": "unknown business"})
    assert (listed.status_code, listed.json()) == (404, {"detail": "unknown business"})


async def test_a_cors_preflight_from_any_site_is_allowed(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.options(
        chat(tenant),
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in response.headers


async def test_chat_answers_and_errors_carry_the_cors_header(client: httpx.AsyncClient, tenant: Tenant) -> None:
    origin = {"Origin": "https://shop.example"}

    created = await client.post(chat(tenant), json={"visitor_id": new_visitor(), "content": "hi"}, headers=origin)
    invalid = await client.post(chat(tenant), json={"visitor_id": "x", "content": "hi"}, headers=origin)

    assert created.headers["access-control-allow-origin"] == "*"
    assert invalid.headers["access-control-allow-origin"] == "*"


async def test_business_key_routes_do_not_answer_cors(client: httpx.AsyncClient, tenant: Tenant) -> None:
    preflight = await client.options(
        tenant.path("/conversations"),
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    plain = await client.get(
        tenant.path("/conversations"), headers={**tenant.headers, "Origin": "https://evil.example"}
    )

    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in plain.headers


async def test_a_visitor_sending_too_fast_gets_429(settings: StoreSettings, deps: StoreDependencies) -> None:
    # A window this long refills nothing while the test runs, however slow the machine.
    slow_refill = settings.model_copy(update={"store_chat_burst": 3, "store_chat_window_s": 3600.0})
    async with store_client(slow_refill, deps) as client:
        tenant = await create_tenant(client)
        visitor = new_visitor()
        statuses = [(await post(client, tenant, visitor, f"message {n}")).status_code for n in range(4)]
        limited = await post(client, tenant, visitor, "one more")
        another_visitor = await post(client, tenant, new_visitor(), "hello")

    assert statuses == [201, 201, 201, 429]
    assert limited.status_code == 429
    assert limited.json() == {"detail": "too many messages: at most 3 per 3600 s per visitor; retry shortly"}
    assert limited.headers["retry-after"] == "1"
    assert another_visitor.status_code == 201


async def test_the_default_limit_is_ten_messages_per_ten_seconds(client: httpx.AsyncClient, tenant: Tenant) -> None:
    visitor = new_visitor()
    statuses = [(await post(client, tenant, visitor, f"message {n}")).status_code for n in range(10)]

    assert statuses == [201] * 10


def test_the_rate_limit_refills_over_time() -> None:
    now = [0.0]
    limit = VisitorRateLimit(burst=2, window_s=2.0, clock=lambda: now[0])

    assert [limit.allow(("b", "v")) for _ in range(3)] == [True, True, False]
    now[0] = 1.0
    assert [limit.allow(("b", "v")) for _ in range(2)] == [True, False]


def test_the_rate_limit_tracks_a_bounded_number_of_visitors() -> None:
    limit = VisitorRateLimit(burst=1, window_s=60.0, max_keys=2, clock=lambda: 0.0)

    assert limit.allow(("b", "first"))
    assert not limit.allow(("b", "first"))
    limit.allow(("b", "second"))
    limit.allow(("b", "third"))  # evicts "first", the least recently seen

    assert limit.allow(("b", "first"))


async def test_posted_messages_are_counted(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await post(client, tenant, new_visitor(), "hi")

    text = (await client.get("/metrics")).text

    assert "store_chat_messages_total 1.0" in text
    assert "# TYPE store_stream_clients gauge" in text
