"""Stream tokens: issuing, verifying, and how the stream route refuses what it cannot trust.

A successful stream never ends, so the route tests here are the refusals (plain
JSON answers); opening a stream with a token is in ``test_stream.py``.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from datetime import UTC, datetime

import httpx
import pytest
import structlog
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs

from store.dependencies import StoreDependencies
from store.settings import StoreSettings
from store.tokens import InvalidStreamToken, StreamTokens
from tests.store.conftest import ADMIN_KEY, NewTenant, Tenant

NOW = 1_800_000_000.0


def tokens(secret: bytes = b"s" * 32, ttl_s: int = 300) -> StreamTokens:
    return StreamTokens(secret, ttl_s=ttl_s)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_an_issued_token_is_valid_for_its_business_until_it_expires() -> None:
    issued = tokens(ttl_s=300).issue("acme", now=NOW)

    tokens().verify(issued.token, "acme", now=NOW + 299)
    assert issued.expires_at == datetime.fromtimestamp(NOW + 300, UTC)


def test_the_token_carries_the_business_and_expiry_in_base64url_json() -> None:
    payload, _, _ = tokens().issue("acme", now=NOW).token.partition(".")

    assert json.loads(base64.urlsafe_b64decode(payload + "==")) == {"b": "acme", "exp": int(NOW) + 300}


def test_an_expired_token_is_refused() -> None:
    issued = tokens(ttl_s=300).issue("acme", now=NOW)

    with pytest.raises(InvalidStreamToken, match="stream token expired"):
        tokens().verify(issued.token, "acme", now=NOW + 300)


def test_a_token_of_another_business_is_refused() -> None:
    issued = tokens().issue("acme", now=NOW)

    with pytest.raises(InvalidStreamToken, match="for another business"):
        tokens().verify(issued.token, "globex", now=NOW)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    issued = tokens(secret=b"another secret of enough length").issue("acme", now=NOW)

    with pytest.raises(InvalidStreamToken, match="invalid stream token"):
        tokens().verify(issued.token, "acme", now=NOW)


def test_a_payload_changed_after_signing_is_refused() -> None:
    _, _, signature = tokens().issue("acme", now=NOW).token.partition(".")
    forged = b64(json.dumps({"b": "globex", "exp": int(NOW) + 300}).encode()) + "." + signature

    with pytest.raises(InvalidStreamToken, match="invalid stream token"):
        tokens().verify(forged, "globex", now=NOW)


@pytest.mark.parametrize(
    "token",
    ["", "no-dot", "a.b", ".", "é.é", "abc.!!!", "x" * 50],
    ids=["empty", "no-dot", "short", "dot-only", "non-ascii", "bad-base64", "garbage"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidStreamToken, match="invalid stream token"):
        tokens().verify(token, "acme", now=NOW)


@pytest.mark.parametrize(
    "claims",
    [[1, 2], {"b": "acme"}, {"b": "acme", "exp": "2030"}, {"b": "acme", "exp": True}, {"b": 7, "exp": 2_000_000_000}],
    ids=["not-an-object", "no-exp", "exp-string", "exp-bool", "b-number"],
)
def test_signed_tokens_with_wrong_claims_are_refused(claims: object) -> None:
    """Even a correctly signed token is refused unless its claims have the documented shape."""
    secret = b"s" * 32
    payload = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(secret, payload.encode(), "sha256").digest())

    with pytest.raises(InvalidStreamToken, match="invalid stream token"):
        tokens(secret).verify(f"{payload}.{signature}", "acme", now=NOW)


def test_a_signature_with_stray_characters_is_refused() -> None:
    """The base64 decoder would skip them; only the canonical encoding is accepted."""
    issued = tokens().issue("acme", now=NOW).token

    with pytest.raises(InvalidStreamToken, match="invalid stream token"):
        tokens().verify(issued + "!", "acme", now=NOW)


def test_replicas_with_the_same_admin_key_accept_each_other_tokens(settings: StoreSettings) -> None:
    issued = StreamTokens.for_settings(settings).issue("acme")

    StreamTokens.for_settings(settings.model_copy()).verify(issued.token, "acme")
    other_admin = settings.model_copy(update={"store_admin_key": SecretStr("x" * 20)})
    with pytest.raises(InvalidStreamToken):
        StreamTokens.for_settings(other_admin).verify(issued.token, "acme")


def test_store_token_secret_replaces_the_derived_secret(settings: StoreSettings) -> None:
    with_secret = settings.model_copy(update={"store_token_secret": SecretStr("t" * 32)})

    issued = StreamTokens.for_settings(with_secret).issue("acme")

    StreamTokens(b"t" * 32, ttl_s=1).verify(issued.token, "acme")
    with pytest.raises(InvalidStreamToken):
        StreamTokens.for_settings(settings).verify(issued.token, "acme")


def test_a_short_token_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="store_token_secret"):
        StoreSettings(store_admin_key=ADMIN_KEY, store_token_secret="short")


def test_the_token_ttl_comes_from_the_settings(settings: StoreSettings) -> None:
    short = settings.model_copy(update={"store_stream_token_ttl_s": 7})

    issued = StreamTokens.for_settings(short).issue("acme", now=NOW)

    assert issued.expires_at == datetime.fromtimestamp(NOW + 7, UTC)


async def test_a_business_key_issues_a_token_for_its_business(client: httpx.AsyncClient, tenant: Tenant) -> None:
    before = time.time()

    response = await client.post(tenant.path("/stream-tokens"), headers=tenant.headers)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"token", "expires_at"}
    expires_at = datetime.fromisoformat(body["expires_at"]).timestamp()
    assert before + 299 <= expires_at <= time.time() + 300


async def test_issuing_a_token_needs_a_key_of_that_business(client: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    a, b = await new_tenant(), await new_tenant()

    assert (await client.post(a.path("/stream-tokens"))).status_code == 401
    assert (await client.post(a.path("/stream-tokens"), headers=b.headers)).status_code == 403


async def test_the_stream_without_a_key_or_token_is_401(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get(tenant.path("/stream"))

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["detail"].startswith("missing credentials")


async def test_the_stream_refuses_an_expired_token(
    client: httpx.AsyncClient, tenant: Tenant, deps: StoreDependencies
) -> None:
    expired = deps.stream_tokens.issue(tenant.business_id, now=time.time() - 600)

    response = await client.get(tenant.path("/stream"), params={"token": expired.token})

    assert response.status_code == 401
    assert response.json() == {"detail": "stream token expired; request a new one"}


async def test_the_stream_refuses_a_forged_token(client: httpx.AsyncClient, tenant: Tenant) -> None:
    forged = tokens(b"not the store's secret, guessed").issue(tenant.business_id).token

    response = await client.get(tenant.path("/stream"), params={"token": forged})

    assert response.status_code == 401
    assert response.json() == {"detail": "invalid stream token"}


async def test_the_stream_refuses_a_token_of_another_business(
    client: httpx.AsyncClient, new_tenant: NewTenant, deps: StoreDependencies
) -> None:
    a, b = await new_tenant(), await new_tenant()
    token_of_b = deps.stream_tokens.issue(b.business_id).token

    response = await client.get(a.path("/stream"), params={"token": token_of_b})

    assert response.status_code == 401
    assert response.json() == {"detail": "this stream token is for another business"}


async def test_the_stream_answers_like_every_business_route_to_keys(
    client: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    a, b = await new_tenant(), await new_tenant()

    assert (await client.get(a.path("/stream"), headers={"Authorization": "Bearer sk_unknown"})).status_code == 401
    assert (await client.get(a.path("/stream"), headers=b.headers)).status_code == 403
    assert (await client.get(a.path("/stream"), headers={"Authorization": f"Bearer {ADMIN_KEY}"})).status_code == 403


async def test_the_stream_validates_its_parameters(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get(tenant.path("/stream"), params={"conversation_id": "no.dots"}, headers=tenant.headers)

    assert response.status_code == 422
    assert response.json()["detail"].startswith("query.conversation_id: expected an id")


async def test_tokens_never_appear_in_the_logs(
    client: httpx.AsyncClient, tenant: Tenant, deps: StoreDependencies
) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        issued = (await client.post(tenant.path("/stream-tokens"), headers=tenant.headers)).json()["token"]
        await client.get(tenant.path("/stream"), params={"token": issued + "x"})

    assert logs
    assert issued not in repr(logs)
    assert tenant.api_key not in repr(logs)
