"""Liveness, Prometheus metrics and the per-request summary log line."""

from __future__ import annotations

import httpx
import structlog
from structlog.testing import capture_logs

from tests.store.conftest import ADMIN_KEY, WIDGET_CODE, Tenant

STORE_METRICS = (
    "store_http_requests_total",
    "store_http_request_duration_seconds",
    "store_test_runs_total",
    "store_test_run_duration_seconds",
    "store_events_published_total",
)


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_metrics_expose_the_store_metric_names(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for name in STORE_METRICS:
        assert f"# TYPE {name}" in response.text


async def test_request_metrics_are_labelled_by_route_template_not_by_ids(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await client.get(tenant.path("/widgets/missing"), headers=tenant.headers)
    await client.get("/no/such/route")

    text = (await client.get("/metrics")).text

    route = "/v1/businesses/{business_id}/widgets/{widget_id}"
    assert f'store_http_requests_total{{method="GET",route="{route}",status="404"}} 1.0' in text
    assert 'route="(unmatched)",status="404"' in text
    assert tenant.business_id not in text
    assert "missing" not in text


async def test_opened_events_are_counted(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await client.put(tenant.path("/conversations/c"), json={}, headers=tenant.headers)
    await client.post(tenant.path("/conversations/c/open"), headers=tenant.headers)

    text = (await client.get("/metrics")).text

    assert 'store_events_published_total{type="conversation.opened"} 1.0' in text


async def test_each_request_logs_one_summary_line_with_its_ids_and_no_secrets(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await client.post(
            tenant.path("/widgets"),
            json={"widget_id": "crm", "name": "CRM", "code": WIDGET_CODE},
            headers=tenant.headers,
        )

    [summary] = [entry for entry in logs if entry["event"] == "http.request"]
    assert summary["method"] == "POST"
    assert summary["route"] == "/v1/businesses/{business_id}/widgets"
    assert summary["status"] == 201
    assert summary["business_id"] == tenant.business_id
    assert summary["widget_id"] == "crm"
    assert isinstance(summary["duration_ms"], float)
    everything = repr(logs)
    for secret in (tenant.api_key, ADMIN_KEY, "Bearer", "get_sidebar_data"):
        assert secret not in everything


async def test_log_context_does_not_leak_between_requests(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await client.get(tenant.path("/widgets/crm"), headers=tenant.headers)

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await client.get("/healthz")

    [summary] = [entry for entry in logs if entry["event"] == "http.request"]
    assert "business_id" not in summary
    assert "widget_id" not in summary


async def test_the_openapi_document_describes_every_route(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()

    assert {tag["name"] for tag in spec["tags"]} == {
        "businesses",
        "customers",
        "conversations",
        "widgets",
        "secrets",
        "sidebars",
        "system",
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
            assert operation.get("tags"), f"{method.upper()} {path} has no tag"
    assert (await client.get("/docs")).status_code == 200


async def test_the_summary_line_of_an_open_names_the_event(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await client.put(tenant.path("/conversations/c"), json={}, headers=tenant.headers)

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        response = await client.post(tenant.path("/conversations/c/open"), headers=tenant.headers)

    [summary] = [entry for entry in logs if entry["event"] == "http.request"]
    assert summary["event_id"] == response.json()["event_id"]
    assert summary["conversation_id"] == "c"
    assert summary["status"] == 202
