"""Orchestrator settings, read once from the environment at start-up."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings, MongoSettings


class OrchestratorSettings(CommonSettings, MongoSettings):
    orchestrator_metrics_port: int = Field(default=9101, ge=0, le=65535)
    orchestrator_prefetch: int = Field(default=32, ge=1, le=1000)
    # The sidebar deadline is the largest widget timeout plus this margin,
    # unless sidebar_deadline_s fixes it outright.
    sidebar_deadline_margin_s: float = Field(default=2.0, ge=0)
    sidebar_deadline_s: float | None = Field(default=None, gt=0)
    sweep_interval_s: float = Field(default=1.0, gt=0)
    # A replica that claimed a run for assembly and died is replaced after this long.
    assembly_lease_s: float = Field(default=30.0, gt=0)
