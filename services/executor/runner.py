"""The runner port: how a widget's code gets executed in isolation.

One small interface so the isolation strategy (a process per job, or warm
workers per widget) can change without touching the job handler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

RunStatus = Literal["ok", "error", "timeout"]


@dataclass(frozen=True)
class RunRequest:
    code: str
    context: dict[str, Any]
    timeout_s: float
    secrets: dict[str, str] = field(default_factory=dict)
    # Whose code this is: a runner may reuse a process only for jobs of the same
    # business, widget and code. Without them, every job gets a process of its own.
    business_id: str | None = None
    widget_id: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one run. ``value`` is the decoded return value when ``status`` is ok;
    it is not yet validated against the return format."""

    status: RunStatus
    duration_s: float
    value: Any = None
    error_type: str | None = None
    error_message: str | None = None
    logs: str = ""
    logs_truncated: bool = False
    # Time spent in widget code itself, when the sandbox measured it; the rest is overhead.
    widget_s: float | None = None
    # "warm" when a process that had run this widget before ran the job, "fresh" when a new one did.
    worker_start: Literal["warm", "fresh"] | None = None


class WidgetRunner(Protocol):
    async def run(self, request: RunRequest) -> RunOutcome: ...
