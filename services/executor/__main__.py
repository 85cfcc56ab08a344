"""Entry point: ``python -m executor``."""

from __future__ import annotations

from functools import partial

import structlog

from executor.app import serve
from executor.settings import ExecutorSettings
from shared.logging import configure_logging
from shared.service import make_undumpable, run_service
from shared.settings import load_settings


def main() -> None:
    settings = load_settings(ExecutorSettings)
    configure_logging("executor", settings.log_level)
    if not make_undumpable():
        structlog.get_logger().warning("process.dumpable", reason="prctl(PR_SET_DUMPABLE, 0) failed")
    run_service(partial(serve, settings))


if __name__ == "__main__":
    main()
