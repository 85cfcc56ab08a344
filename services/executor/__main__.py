"""Entry point: ``python -m executor``."""

from __future__ import annotations

from functools import partial

from executor.app import serve
from executor.settings import ExecutorSettings
from shared.logging import configure_logging
from shared.service import make_undumpable, run_service


def main() -> None:
    settings = ExecutorSettings()
    configure_logging("executor", settings.log_level)
    make_undumpable()
    run_service(partial(serve, settings))


if __name__ == "__main__":
    main()
