"""Run Test over the real broker: the job the store publishes, the reply it waits for, and the 504.

The success path against a real executor is covered by the system tests; here
a stand-in executor answers through RabbitMQ the way the executor does.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage

from shared.broker import Broker, OutgoingMessage
from shared.contracts.jobs import WidgetJob, WidgetResult, decode_widget_job
from shared.contracts.widget_output import validate_widget_output
from shared.topology import WIDGET_JOBS_QUEUE
from store.dependencies import open_store
from store.settings import StoreSettings
from tests.infra import Infra, provision_infra
from tests.store.conftest import TEST_RUN_MARGIN_S, WIDGET_CODE, Tenant, create_tenant, store_client, store_settings

UNSAVED_CODE = "def get_sidebar_data(context):\n    return {'title': 'Unsaved', 'items': []}\n"


def answer(job: WidgetJob) -> WidgetResult:
    customer = job.context.customer or {}
    output = {"title": job.widget_name, "items": [{"title": str(customer.get("email")), "sections": []}]}
    return WidgetResult(
        job_id=job.job_id,
        run_id=job.run_id,
        purpose=job.purpose,
        business_id=job.business_id,
        conversation_id=job.conversation_id,
        widget_id=job.widget_id,
        status="ok",
        duration_ms=7,
        data=validate_widget_output(output),
        error=None,
        logs="looked up the customer\n",
        logs_truncated=False,
        finished_at=datetime.now(UTC),
    )


@pytest.fixture
async def executor_jobs(settings: StoreSettings) -> AsyncIterator[list[WidgetJob]]:
    """A stand-in executor on the jobs queue; it first sends junk, which the store must ignore."""
    broker = await Broker.connect(settings.rabbitmq_url.get_secret_value(), prefetch=10, name="fake-executor")
    jobs: list[WidgetJob] = []

    async def on_job(message: AbstractIncomingMessage) -> None:
        async with message.process():
            job = decode_widget_job(message.body)
            jobs.append(job)
            assert message.reply_to
            for body in (b"not json", answer(job).model_dump_json().encode()):
                reply = OutgoingMessage(body, message_type="widget.result", correlation_id=message.correlation_id)
                await broker.publish_direct(message.reply_to, reply)

    queue = broker.queue(WIDGET_JOBS_QUEUE)
    tag = await queue.consume(on_job)
    try:
        yield jobs
    finally:
        await queue.cancel(tag)
        await broker.close()


@pytest.fixture
async def conversation(client: httpx.AsyncClient, tenant: Tenant) -> str:
    await client.put(tenant.path("/customers/cust-1"), json={"email": "ada@example.com"}, headers=tenant.headers)
    response = await client.put(
        tenant.path("/conversations/conv-1"),
        json={"public_id": "1042", "customer_id": "cust-1"},
        headers=tenant.headers,
    )
    assert response.status_code == 201
    return "conv-1"


async def create_widget(client: httpx.AsyncClient, tenant: Tenant, timeout_s: float) -> None:
    body = {"widget_id": "crm", "name": "CRM", "code": WIDGET_CODE, "timeout_s": timeout_s}
    assert (await client.post(tenant.path("/widgets"), json=body, headers=tenant.headers)).status_code == 201


@pytest.fixture
def lonely_infra() -> Iterator[Infra]:
    """A vhost of its own, so no executor started by any other test can be consuming its jobs queue."""
    with provision_infra() as infra:
        yield infra


async def test_without_an_executor_a_test_run_is_a_504_after_timeout_plus_margin(lonely_infra: Infra) -> None:
    settings = store_settings(lonely_infra)
    async with open_store(settings) as deps, store_client(settings, deps) as client:
        tenant = await create_tenant(client)
        await client.put(tenant.path("/conversations/conv-1"), json={}, headers=tenant.headers)
        await create_widget(client, tenant, timeout_s=0.5)
        started = time.monotonic()

        response = await client.post(
            tenant.path("/widgets/crm/test"), json={"conversation_id": "conv-1"}, headers=tenant.headers
        )

        waited = time.monotonic() - started
        assert response.status_code == 504
        assert response.json() == {"detail": "no executor answered within 0.8 s — is an executor running?"}
        assert 0.5 + TEST_RUN_MARGIN_S <= waited < 5
        assert 'store_test_runs_total{status="no_answer"} 1.0' in deps.metrics.render().decode()


async def test_a_test_run_returns_the_executors_result(
    client: httpx.AsyncClient, tenant: Tenant, conversation: str, executor_jobs: list[WidgetJob]
) -> None:
    await create_widget(client, tenant, timeout_s=2)

    response = await client.post(
        tenant.path("/widgets/crm/test"), json={"conversation_id": conversation}, headers=tenant.headers
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "duration_ms": 7,
        "data": {
            "title": "CRM",
            "items": [
                {
                    "title": "ada@example.com",
                    "subtitle": None,
                    "link": None,
                    "badge": None,
                    "actions": [],
                    "collapsible": True,
                    "sections": [],
                }
            ],
        },
        "error": None,
        "logs": "looked up the customer\n",
        "logs_truncated": False,
    }


async def test_the_test_job_carries_the_stored_widget_and_live_context(
    client: httpx.AsyncClient, tenant: Tenant, conversation: str, executor_jobs: list[WidgetJob]
) -> None:
    await create_widget(client, tenant, timeout_s=2)

    await client.post(tenant.path("/widgets/crm/test"), json={"conversation_id": conversation}, headers=tenant.headers)

    [job] = [j for j in executor_jobs if j.business_id == tenant.business_id]
    assert job.purpose == "test"
    assert job.run_id.startswith("test-")
    assert job.job_id == f"{job.run_id}.crm"
    assert (job.widget_id, job.widget_name, job.code, job.timeout_s) == ("crm", "CRM", WIDGET_CODE, 2.0)
    assert job.conversation_id == conversation
    assert job.context.conversation["public_id"] == "1042"
    assert job.context.business == {"id": tenant.business_id, "name": "Acme"}
    assert 0 < (job.expires_at - datetime.now(UTC)).total_seconds() <= 2 + TEST_RUN_MARGIN_S


async def test_unsaved_code_is_tested_by_public_id_without_being_saved(
    client: httpx.AsyncClient, tenant: Tenant, conversation: str, executor_jobs: list[WidgetJob]
) -> None:
    await create_widget(client, tenant, timeout_s=2)

    response = await client.post(
        tenant.path("/widgets/crm/test"), json={"public_id": "1042", "code": UNSAVED_CODE}, headers=tenant.headers
    )

    assert response.status_code == 200
    [job] = [j for j in executor_jobs if j.business_id == tenant.business_id]
    assert (job.code, job.conversation_id) == (UNSAVED_CODE, conversation)
    stored = await client.get(tenant.path("/widgets/crm"), headers=tenant.headers)
    assert stored.json()["code"] == WIDGET_CODE


async def test_unsaved_code_that_fails_the_check_is_a_422_and_runs_nothing(
    client: httpx.AsyncClient, tenant: Tenant, conversation: str, executor_jobs: list[WidgetJob]
) -> None:
    await create_widget(client, tenant, timeout_s=2)

    response = await client.post(
        tenant.path("/widgets/crm/test"),
        json={"conversation_id": conversation, "code": "def get_sidebar_data(context):\n  x = (\n"},
        headers=tenant.headers,
    )

    assert response.status_code == 422
    assert response.json()["line"] == 2
    assert [j for j in executor_jobs if j.business_id == tenant.business_id] == []


async def test_a_test_run_needs_exactly_one_way_to_name_the_conversation(
    client: httpx.AsyncClient, tenant: Tenant, conversation: str
) -> None:
    await create_widget(client, tenant, timeout_s=2)
    path = tenant.path("/widgets/crm/test")

    both = await client.post(path, json={"conversation_id": conversation, "public_id": "1042"}, headers=tenant.headers)
    neither = await client.post(path, json={}, headers=tenant.headers)

    for response in (both, neither):
        assert response.status_code == 422
        assert response.json()["detail"] == "body: give exactly one of conversation_id or public_id"


async def test_a_test_run_of_unknown_things_is_a_404(
    client: httpx.AsyncClient, tenant: Tenant, conversation: str
) -> None:
    await create_widget(client, tenant, timeout_s=2)

    no_widget = await client.post(
        tenant.path("/widgets/ghost/test"), json={"conversation_id": conversation}, headers=tenant.headers
    )
    no_conversation = await client.post(
        tenant.path("/widgets/crm/test"), json={"conversation_id": "ghost"}, headers=tenant.headers
    )
    no_public_id = await client.post(
        tenant.path("/widgets/crm/test"), json={"public_id": "9999"}, headers=tenant.headers
    )

    assert no_widget.json() == {"detail": "widget 'ghost' not found"}
    assert no_conversation.json() == {"detail": "conversation 'ghost' not found"}
    assert no_public_id.json() == {"detail": "no conversation has public id '9999'"}
    assert {r.status_code for r in (no_widget, no_conversation, no_public_id)} == {404}
