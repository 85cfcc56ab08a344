"""Executor settings, read once from the environment at start-up."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class ExecutorSettings(CommonSettings):
    executor_concurrency: int = Field(default=4, ge=1, le=256)
    executor_metrics_port: int = Field(default=9102, ge=0, le=65535)
    executor_memory_limit_mb: int = Field(default=256, ge=64)
    executor_log_limit_bytes: int = Field(default=64 * 1024, ge=1024)
    executor_result_limit_bytes: int = Field(default=256 * 1024, ge=1024)
    # Used only when the executor runs as root: each concurrent widget process runs
    # under its own unprivileged uid, first_uid .. first_uid + concurrency - 1.
    executor_sandbox_first_uid: int = Field(default=60000, ge=1000)
    executor_sandbox_gid: int = Field(default=65534, ge=1)
