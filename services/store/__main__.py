"""Entry point: ``python -m store`` (or ``sidebar-store``)."""

from __future__ import annotations

import asyncio
import sys
from functools import partial

import structlog
import uvicorn
from pydantic import ValidationError

from shared.contracts.errors import describe_errors, format_location
from shared.logging import configure_logging
from shared.service import make_undumpable, run_service
from store.app import create_app
from store.settings import StoreSettings

log = structlog.get_logger(__name__)


def _settings_problem(exc: ValidationError) -> str:
    # Name the environment variable, never the value: some are secrets.
    errors = exc.errors(include_url=False)
    for error in errors:
        error["loc"] = (format_location(error["loc"]).upper(),)
    return "store: invalid settings: " + describe_errors(errors)


async def serve(settings: StoreSettings, stop: asyncio.Event) -> None:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.store_host,
        port=settings.store_port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
    )
    server = uvicorn.Server(config)
    # While it serves, uvicorn handles SIGTERM/SIGINT itself: it stops accepting,
    # finishes requests in flight, then runs the lifespan shutdown. It re-raises
    # the signal afterwards, which sets ``stop``; ``stop`` set by anyone else ends it too.
    serving = asyncio.create_task(server.serve())
    stopping = asyncio.create_task(stop.wait())
    log.info("store.starting", host=settings.store_host, port=settings.store_port)
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
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
