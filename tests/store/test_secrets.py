"""Widget secrets through the store API: write-only, sealed at rest, scoped to one business,
and attached (still sealed) to Run Test jobs exactly as to live ones."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import structlog
from aio_pika.abc import AbstractIncomingMessage
from pydantic import SecretStr, ValidationError
from pymongo.asynchronous.database import AsyncDatabase
from structlog.testing import capture_logs

from shared.broker import Broker, OutgoingMessage
from shared.contracts.events import EventContext
from shared.contracts.jobs import WidgetJob, WidgetResult, decode_widget_job
from shared.ids import scoped_key
from shared.mongo import SECRETS, Document
from shared.secrets import SecretBox, SecretsUnavailable, parse_key
from shared.topology import WIDGET_JOBS_QUEUE
from store.dependencies import open_store
from store.routes.secrets import MAX_SECRETS
from store.settings import StoreSettings
from tests.infra import Infra
from tests.store.conftest import ADMIN, ADMIN_KEY, WIDGET_CODE, NewTenant, Tenant, store_client, store_settings

KEY = base64.b64encode(os.urandom(32)).decode()
VALUE = "sk_live_0123456789abcdef"
NOT_CONFIGURED = {"detail": "secrets are not configured on this store (set SECRETS_KEY)"}
NAME_RULE = "path.name: expected 1-64 characters from A-Z, a-z, 0-9 and '_', not starting with a digit"


@pytest.fixture
def settings(infra: Infra) -> StoreSettings:
    """The store under test seals with ``KEY``."""
    return store_settings(infra).model_copy(update={"secrets_key": SecretStr(KEY)})


async def put_secret(client: httpx.AsyncClient, tenant: Tenant, name: str, value: str) -> httpx.Response:
    return await client.put(tenant.path(f"/secrets/{name}"), json={"value": value}, headers=tenant.headers)


async def names(client: httpx.AsyncClient, tenant: Tenant) -> list[str]:
    response = await client.get(tenant.path("/secrets"), headers=tenant.headers)
    assert response.status_code == 200, response.text
    return [entry["name"] for entry in response.json()]


async def test_a_secret_is_set_replaced_listed_and_deleted_without_its_value_ever_returned(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await put_secret(client, tenant, "CRM_API_KEY", "first-value")
    replaced = await put_secret(client, tenant, "CRM_API_KEY", VALUE)
    await put_secret(client, tenant, "another", "x")
    listed = await client.get(tenant.path("/secrets"), headers=tenant.headers)
    deleted = await client.delete(tenant.path("/secrets/CRM_API_KEY"), headers=tenant.headers)
    deleted_again = await client.delete(tenant.path("/secrets/CRM_API_KEY"), headers=tenant.headers)

    assert (created.status_code, created.content) == (204, b"")
    assert (replaced.status_code, replaced.content) == (204, b"")
    assert [set(entry) for entry in listed.json()] == [{"name", "updated_at"}] * 2
    assert [entry["name"] for entry in listed.json()] == ["CRM_API_KEY", "another"]
    assert datetime.fromisoformat(listed.json()[0]["updated_at"]) <= datetime.now(UTC)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert (deleted_again.status_code, deleted_again.json()) == (404, {"detail": "secret 'CRM_API_KEY' not found"})
    assert await names(client, tenant) == ["another"]
    for response in (created, replaced, listed, deleted, deleted_again):
        assert VALUE not in response.text
        assert "first-value" not in response.text


async def test_the_stored_document_holds_only_the_sealed_value(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncDatabase[Document]
) -> None:
    await put_secret(client, tenant, "CRM_API_KEY", VALUE)

    doc = await db[SECRETS].find_one({"_id": scoped_key(tenant.business_id, "CRM_API_KEY")})

    assert doc is not None
    assert set(doc) == {"_id", "business_id", "name", "sealed", "updated_at"}
    assert (doc["business_id"], doc["name"]) == (tenant.business_id, "CRM_API_KEY")
    assert VALUE not in repr(doc)
    assert VALUE.encode() not in base64.b64decode(doc["sealed"])
    box = SecretBox(parse_key(KEY))
    assert box.open(tenant.business_id, "CRM_API_KEY", doc["sealed"]) == VALUE
    with pytest.raises(SecretsUnavailable):
        box.open("another-business", "CRM_API_KEY", doc["sealed"])


async def test_a_business_cannot_set_list_or_delete_another_business_s_secrets(
    client: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    owner, intruder = await new_tenant(), await new_tenant()
    await put_secret(client, owner, "CRM_API_KEY", VALUE)
    attempts = [
        ("PUT", "/secrets/CRM_API_KEY", {"value": "overwritten"}),
        ("PUT", "/secrets/NEW", {"value": "planted"}),
        ("GET", "/secrets", None),
        ("DELETE", "/secrets/CRM_API_KEY", None),
    ]

    for method, path, body in attempts:
        for headers, expected in ((intruder.headers, 403), (ADMIN, 403), ({}, 401)):
            response = await client.request(method, owner.path(path), json=body, headers=headers)
            assert response.status_code == expected, (method, path, response.text)
            assert VALUE not in response.text

    assert await names(client, owner) == ["CRM_API_KEY"]
    assert await names(client, intruder) == []


async def test_businesses_with_a_secret_of_the_same_name_keep_their_own(
    client: httpx.AsyncClient, new_tenant: NewTenant, db: AsyncDatabase[Document]
) -> None:
    first, second = await new_tenant(), await new_tenant()
    await put_secret(client, first, "TOKEN", "first")
    await put_secret(client, second, "TOKEN", "second")
    await client.delete(second.path("/secrets/TOKEN"), headers=second.headers)

    doc = await db[SECRETS].find_one({"_id": scoped_key(first.business_id, "TOKEN")})
    assert doc is not None
    assert SecretBox(parse_key(KEY)).open(first.business_id, "TOKEN", doc["sealed"]) == "first"
    assert await names(client, second) == []


@pytest.mark.parametrize("name", ["1ABC", "a-b", "a.b", "é", "x" * 65, "with%20space"])
async def test_a_bad_name_is_a_422_that_states_the_rule(client: httpx.AsyncClient, tenant: Tenant, name: str) -> None:
    response = await put_secret(client, tenant, name, VALUE)

    assert response.status_code == 422
    assert response.json() == {"detail": NAME_RULE}


@pytest.mark.parametrize("name", ["_", "A", "crm_api_key", "X" * 64, "_9"])
async def test_names_follow_the_identifier_rule(client: httpx.AsyncClient, tenant: Tenant, name: str) -> None:
    assert (await put_secret(client, tenant, name, VALUE)).status_code == 204


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"value": ""}, "body.value: must be 1-4096 characters long"),
        ({"value": VALUE + "x" * 4096}, "body.value: must be 1-4096 characters long"),
        ({"value": 12345678}, "body.value: expected a string"),
        ({}, "body.value: required field is missing"),
        ({"value": "ok", "valeu": VALUE}, "body.valeu: unknown field"),
    ],
)
async def test_a_bad_value_is_a_422_that_never_echoes_the_input(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, object], detail: str
) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        response = await client.put(tenant.path("/secrets/CRM_API_KEY"), json=body, headers=tenant.headers)

    assert response.status_code == 422
    assert response.json() == {"detail": detail}
    assert VALUE not in repr(logs)
    assert await names(client, tenant) == []


async def test_the_request_log_never_carries_the_value(client: httpx.AsyncClient, tenant: Tenant) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await put_secret(client, tenant, "CRM_API_KEY", VALUE)

    [summary] = [entry for entry in logs if entry["event"] == "http.request"]
    assert (summary["route"], summary["status"]) == ("/v1/businesses/{business_id}/secrets/{name}", 204)
    assert VALUE not in repr(logs)


async def test_a_business_holds_at_most_the_secrets_one_job_can_carry(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncDatabase[Document]
) -> None:
    box = SecretBox(parse_key(KEY))
    seeded = [
        {
            "_id": scoped_key(tenant.business_id, f"S{n}"),
            "business_id": tenant.business_id,
            "name": f"S{n}",
            "sealed": box.seal(tenant.business_id, f"S{n}", "v"),
            "updated_at": datetime.now(UTC),
        }
        for n in range(MAX_SECRETS - 1)
    ]
    await db[SECRETS].insert_many(seeded)

    last = await put_secret(client, tenant, "LAST", "v")
    one_too_many = await put_secret(client, tenant, "ONE_TOO_MANY", "v")
    replaced = await put_secret(client, tenant, "S0", "new value")

    assert last.status_code == 204
    assert one_too_many.status_code == 409
    assert one_too_many.json() == {
        "detail": f"a business can have at most {MAX_SECRETS} secrets; delete one before adding another"
    }
    assert replaced.status_code == 204
    assert len(await names(client, tenant)) == MAX_SECRETS


def test_the_limit_is_what_a_widget_job_can_carry() -> None:
    job = {
        "job_id": "job",
        "run_id": "run",
        "purpose": "sidebar",
        "business_id": "biz",
        "conversation_id": "conv",
        "widget_id": "crm",
        "widget_name": "CRM",
        "code": WIDGET_CODE,
        "timeout_s": 1,
        "context": EventContext(conversation={}, customer=None, business={"id": "biz"}),
        "expires_at": datetime.now(UTC),
    }
    full = {f"S{n}": "sealed" for n in range(MAX_SECRETS)}

    WidgetJob.model_validate({**job, "secrets": full})
    with pytest.raises(ValidationError, match="at most 100 items"):
        WidgetJob.model_validate({**job, "secrets": {**full, "ONE_MORE": "sealed"}})


async def test_without_a_secrets_key_every_secrets_route_is_a_503_after_authentication(infra: Infra) -> None:
    settings = store_settings(infra).model_copy(update={"secrets_key": None})
    async with open_store(settings) as deps, store_client(settings, deps) as client:
        response = await client.post("/v1/businesses", json={"business_id": "no-key", "name": "Acme"}, headers=ADMIN)
        tenant = Tenant("no-key", response.json()["api_key"])

        put = await put_secret(client, tenant, "CRM_API_KEY", VALUE)
        listed = await client.get(tenant.path("/secrets"), headers=tenant.headers)
        deleted = await client.delete(tenant.path("/secrets/CRM_API_KEY"), headers=tenant.headers)
        anonymous = await client.get(tenant.path("/secrets"))

    for response in (put, listed, deleted):
        assert (response.status_code, response.json()) == (503, NOT_CONFIGURED)
    assert anonymous.status_code == 401


def test_an_invalid_secrets_key_stops_the_store_without_echoing_it() -> None:
    bad = base64.b64encode(b"only-sixteen-byt").decode()
    with pytest.raises(ValidationError, match="SECRETS_KEY must decode to 32 bytes"):
        StoreSettings(store_admin_key=ADMIN_KEY, secrets_key=bad)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORE_", "SECRETS_"))}
    result = subprocess.run(
        [sys.executable, "-m", "store"],
        env={**env, "STORE_ADMIN_KEY": ADMIN_KEY, "SECRETS_KEY": bad},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "SECRETS_KEY: value error, SECRETS_KEY must decode to 32 bytes" in result.stderr
    assert bad not in result.stderr


@pytest.fixture
async def test_jobs(settings: StoreSettings) -> AsyncIterator[list[WidgetJob]]:
    """A stand-in executor: it records each job and answers it, as the executor does."""
    broker = await Broker.connect(settings.rabbitmq_url.get_secret_value(), prefetch=10, name="fake-executor")
    jobs: list[WidgetJob] = []

    async def on_job(message: AbstractIncomingMessage) -> None:
        async with message.process():
            job = decode_widget_job(message.body)
            jobs.append(job)
            result = WidgetResult(
                job_id=job.job_id,
                run_id=job.run_id,
                business_id=job.business_id,
                conversation_id=job.conversation_id,
                widget_id=job.widget_id,
                purpose=job.purpose,
                status="ok",
                duration_ms=1,
                data=None,
                error=None,
                finished_at=datetime.now(UTC),
            )
            reply = OutgoingMessage(
                result.model_dump_json().encode(), message_type="widget.result", correlation_id=message.correlation_id
            )
            assert message.reply_to
            await broker.publish_direct(message.reply_to, reply)

    queue = broker.queue(WIDGET_JOBS_QUEUE)
    tag = await queue.consume(on_job)
    try:
        yield jobs
    finally:
        await queue.cancel(tag)
        await broker.close()


async def test_a_test_run_job_carries_the_business_s_secrets_sealed(
    client: httpx.AsyncClient, new_tenant: NewTenant, test_jobs: list[WidgetJob]
) -> None:
    tenant, other = await new_tenant(), await new_tenant()
    await put_secret(client, tenant, "CRM_API_KEY", VALUE)
    await put_secret(client, other, "OTHER", "not yours")
    await client.put(tenant.path("/conversations/conv-1"), json={}, headers=tenant.headers)
    widget = {"widget_id": "crm", "name": "CRM", "code": WIDGET_CODE, "timeout_s": 2}
    await client.post(tenant.path("/widgets"), json=widget, headers=tenant.headers)

    response = await client.post(
        tenant.path("/widgets/crm/test"), json={"conversation_id": "conv-1"}, headers=tenant.headers
    )

    assert response.status_code == 200, response.text
    [job] = [j for j in test_jobs if j.business_id == tenant.business_id]
    assert set(job.secrets) == {"CRM_API_KEY"}
    assert VALUE not in job.model_dump_json()
    assert SecretBox(parse_key(KEY)).open(tenant.business_id, "CRM_API_KEY", job.secrets["CRM_API_KEY"]) == VALUE
