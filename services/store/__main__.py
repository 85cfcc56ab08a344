"""Entry point: ``python -m store`` (or ``sidebar-store``)."""

from __future__ import annotations

import asyncio
import sys
from functools import partial
from types import FrameType

import structlog
import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from shared.contracts.errors import describe_errors, format_location
from shared.logging import configure_logging
from shared.service import make_undumpable, run_service
from store.app import create_app
from store.http11 import StoreHttpProtocol
from store.settings import StoreSettings

log = structlog.get_logger(__name__)


def _settings_problem(exc: ValidationError) -> str:
    # Name the environment variable, never the value: some are secrets.
    errors = exc.errors(include_url=False)
    for error in errors:
        error["loc"] = (format_location(error["loc"]).upper(),)
    return "store: invalid settings: " + describe_errors(errors)


class _Server(uvicorn.Server):
    """Ends open event streams as soon as shutdown starts: to uvicorn they are requests in
    flight, and it would otherwise wait the whole drain timeout for them."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._end_streams()

    def _end_streams(self) -> None:
        dependencies = getattr(self._app.state, "dependencies", None)
        if dependencies is not None:
            dependencies.push.close()


async def serve(settings: StoreSettings, stop: asyncio.Event) -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.store_host,
        port=settings.store_port,
        log_config=None,
        access_log=False,
        server_header=False,
        http=StoreHttpProtocol,
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
    )
    server = _Server(config, app)
    # While it serves, uvicorn handles SIGTERM/SIGINT itself: it stops accepting,
    # finishes requests in flight, then runs the lifespan shutdown. It re-raises
    # the signal afterwards, which sets ``stop``; ``stop`` set by anyone else ends it too.
    serving = asyncio.create_task(server.serve())
    stopping = asyncio.create_task(stop.wait())
    log.info("store.starting", host=settings.store_host, port=settings.store_port)
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    server._end_streams()
    stopping.cancel()
    await serving
    log.info("store.stopped")


def main() -> None:
    try:
        settings = StoreSettings()
    except ValidationError as exc:
        sys.exit(_settings_problem(exc))
    configure_logging("store", settings.log_level)
    make_undumpable()
    run_service(partial(serve, settings))


if __name__ == "__main__":
    main()
