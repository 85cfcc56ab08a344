"""Routes for operators: liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response

from store.metrics import METRICS_CONTENT_TYPE, StoreMetrics

TAG = "system"


def system_router(metrics: StoreMetrics) -> APIRouter:
    router = APIRouter(tags=[TAG])

    @router.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    return router
