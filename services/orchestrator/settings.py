"""Orchestrator settings, read once from the environment at start-up."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings, MongoSettings


class OrchestratorSettings(CommonSettings, MongoSettings):
    orchestrator_metrics_port: int = Field(default=9101, ge=0, le=65535)
    # Events a replica holds at once (the prefetch of the events queue): each stays unacked
    # until its sidebar is recorded, so this covers runs, records and events waiting for a run.
    orchestrator_prefetch: int = Field(default=128, ge=1, le=1000)
    # Runs a replica has between taking an event and publishing its sidebar, at once. Kept
    # near what the executors can serve, so that under overload the backlog waits for a run
    # (where admission control sheds what grew too old), not as jobs in the executors' queue.
    orchestrator_max_runs: int = Field(default=32, ge=1, le=1000)
    # The sidebar deadline is the largest widget timeout plus this margin,
    # unless sidebar_deadline_s fixes it outright.
    sidebar_deadline_margin_s: float = Field(default=2.0, ge=0)
    sidebar_deadline_s: float | None = Field(default=None, gt=0)
    # A business's widgets and sealed secrets are cached this long at most; the store's
    # catalog.changed notices drop an entry at once.
    catalog_ttl_s: float = Field(default=30.0, gt=0)
    # Admission control: an event older than this when taken is not run; its sidebar's
    # widgets are all "expired". Unset, the limit is the sidebar's own deadline span.
    admission_max_age_s: float | None = Field(default=None, gt=0)
    # How long publishing or recording a sidebar is retried before the run is handed back
    # to the broker (and re-run by whichever replica gets its event next).
    sidebar_retry_s: float = Field(default=15.0, gt=0)
    # How long recording a published sidebar is retried, holding its event, before the
    # event is handed back (and the sidebar published again by whoever re-runs it).
    sidebar_record_retry_s: float = Field(default=120.0, gt=0)
