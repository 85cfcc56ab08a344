"""Entry point: ``python -m orchestrator``."""

from __future__ import annotations

from functools import partial

from orchestrator.app import serve
from orchestrator.settings import OrchestratorSettings
from shared.logging import configure_logging
from shared.service import make_undumpable, run_service


def main() -> None:
    settings = OrchestratorSettings()
    configure_logging("orchestrator", settings.log_level)
    make_undumpable()
    run_service(partial(serve, settings))


if __name__ == "__main__":
    main()
