"""Entry point: ``python -m orchestrator``."""

from __future__ import annotations

from functools import partial

import structlog

from orchestrator.app import serve
from orchestrator.settings import OrchestratorSettings
from shared.logging import configure_logging
from shared.service import make_undumpable, run_service
from shared.settings import load_settings


def main() -> None:
    settings = load_settings(OrchestratorSettings)
    configure_logging("orchestrator", settings.log_level)
    if not make_undumpable():
        structlog.get_logger().warning("process.dumpable", reason="prctl(PR_SET_DUMPABLE, 0) failed")
    run_service(partial(serve, settings))


if __name__ == "__main__":
    main()
