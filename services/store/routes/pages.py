"""The browser pages the store serves: agent console, widget dashboard, demo shop and chat widget.

They are plain files under ``store/static`` (ES modules and CSS, no build step).
The console and the dashboard get a strict Content-Security-Policy: widget
output is rendered as text anyway, and the policy is the second line of
defence. The demo page is a stand-in for a customer's site, so it keeps the
inline scripts such a site has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import FileResponse, HTMLResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from shared.ids import ID_PATTERN

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

DEMO_BUSINESS = "demo"
_DEMO_PLACEHOLDER = 'data-business="demo"'

# Chat images and item links may point anywhere over http(s); scripts, styles and API calls stay on this origin.
_APP_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' http: https: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_APP_HEADERS = {
    "Content-Security-Policy": _APP_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_NO_CACHE = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


class _RevalidatedFiles(StaticFiles):
    """Static files that browsers revalidate (ETag) on every load, so a deploy is seen at once."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _app_page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type="text/html", headers=_APP_HEADERS)


def pages_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.api_route("/console", methods=["GET", "HEAD"])
    async def console() -> FileResponse:
        return _app_page("console.html")

    @router.api_route("/dashboard", methods=["GET", "HEAD"])
    async def dashboard() -> FileResponse:
        return _app_page("dashboard.html")

    @router.api_route("/demo", methods=["GET", "HEAD"])
    async def demo(
        business: Annotated[str, Query(pattern=ID_PATTERN, description="The business whose chat the shop embeds")] = (
            DEMO_BUSINESS
        ),
    ) -> HTMLResponse:
        html = (STATIC_DIR / "demo.html").read_text(encoding="utf-8")
        # The id matches [A-Za-z0-9_-]{1,128}, so it is safe inside the attribute as is.
        return HTMLResponse(html.replace(_DEMO_PLACEHOLDER, f'data-business="{business}"'), headers=_NO_CACHE)

    @router.api_route("/chat/widget.js", methods=["GET", "HEAD"])
    async def chat_widget() -> FileResponse:
        return FileResponse(STATIC_DIR / "chat" / "widget.js", media_type="text/javascript", headers=_NO_CACHE)

    return router


def mount_pages(app: FastAPI) -> None:
    """Serve the pages and ``/static`` from ``app``."""
    app.include_router(pages_router())
    app.mount("/static", _RevalidatedFiles(directory=STATIC_DIR), name="static")
