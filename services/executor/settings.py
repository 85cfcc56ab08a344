"""Executor settings, read once from the environment at start-up."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from shared.secrets import parse_key
from shared.settings import CommonSettings


class ExecutorSettings(CommonSettings):
    # Widgets mostly wait on HTTP: 16 slots measured p50 656 ms vs 786 ms at 4 (benchmarks/e2e.py,
    # 2 cores); each spare child costs about 1.5 MB private.
    executor_concurrency: int = Field(default=16, ge=1, le=256)
    executor_metrics_port: int = Field(default=9102, ge=0, le=65535)
    executor_memory_limit_mb: int = Field(default=256, ge=64)
    executor_log_limit_bytes: int = Field(default=64 * 1024, ge=1024)
    executor_result_limit_bytes: int = Field(default=256 * 1024, ge=1024)
    # Used only when the executor runs as root: each concurrent widget process runs
    # under its own unprivileged uid, first_uid .. first_uid + concurrency - 1.
    executor_sandbox_first_uid: int = Field(default=60000, ge=1000)
    executor_sandbox_gid: int = Field(default=65534, ge=1)
    executor_open_files: int = Field(default=64, ge=16)
    executor_file_size_bytes: int = Field(default=1024 * 1024, ge=0)
    executor_threads: int = Field(default=32, ge=1)
    # Warm workers: a process that ran a widget's job cleanly takes the next jobs of the same
    # business, widget and code (docs/sandbox.md#warm-workers); false: one job per process.
    executor_warm_workers: bool = True
    executor_warm_max_jobs: int = Field(default=500, ge=1)
    executor_warm_idle_s: float = Field(default=60.0, gt=0)
    # Widgets may reach public addresses on these ports; EXECUTOR_EGRESS_ALLOW adds
    # "ip:port" or "cidr:port" entries (comma-separated) that are private, e.g. a local mock API.
    executor_egress_ports: str = Field(default="80,443", pattern=r"^\d+(,\d+)*$")
    executor_egress_allow: str = Field(default="", pattern=r"^[^\s]*$")
    executor_extra_ca_file: str | None = None
    # Development only: start even when the kernel offers neither seccomp nor Landlock.
    executor_allow_unsandboxed: bool = False
    # Opens the businesses' sealed secrets; the same key the store seals them with.
    secrets_key: SecretStr | None = None

    @field_validator("secrets_key")
    @classmethod
    def _valid_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_key(value.get_secret_value())
        return value

    def egress_allow(self) -> tuple[str, ...]:
        return tuple(entry for entry in self.executor_egress_allow.split(",") if entry)

    def egress_ports(self) -> tuple[int, ...]:
        return tuple(int(port) for port in self.executor_egress_ports.split(","))
