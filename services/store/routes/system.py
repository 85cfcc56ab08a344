"""Routes for operators: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from shared.health import readiness
from store.dependencies import Deps
from store.metrics import METRICS_CONTENT_TYPE, StoreMetrics

TAG = "system"


def system_router(metrics: StoreMetrics) -> APIRouter:
    router = APIRouter(tags=[TAG])

    @router.get("/healthz", summary="Liveness: the event loop answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: serving, with the broker connected and the database reachable",
        responses={503: {"description": "Not ready; `checks` names what is missing"}},
    )
    async def readyz(deps: Deps) -> JSONResponse:
        status, body = readiness(deps.health.checks())
        return JSONResponse(body, status_code=status)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    return router
