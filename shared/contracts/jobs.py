"""Internal, versioned messages between the orchestrator (or store) and executors.

A job carries everything a widget run needs (code, context, limits), so an
executor never touches the database. Sidebar jobs report to the results queue;
test-run jobs reply to the AMQP ``reply_to`` queue of the caller.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from shared.contracts.events import EventContext, WidgetError, WidgetStatus
from shared.contracts.widget_output import WidgetOutput
from shared.ids import Id

MAX_TIMEOUT_S = 30.0
DEFAULT_TIMEOUT_S = 10.0

JobPurpose = Literal["sidebar", "test"]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    business_id: Id
    conversation_id: Id
    widget_id: Id

    def log_fields(self) -> dict[str, str]:
        """The ids every log line about this job carries; ``run_id`` is the trigger event's id."""
        return {
            "event_id": self.run_id,
            "business_id": self.business_id,
            "conversation_id": self.conversation_id,
            "widget_id": self.widget_id,
        }


class WidgetJob(_Message):
    type: Literal["widget.job"] = "widget.job"
    version: Literal[1] = 1
    job_id: str = Field(min_length=1, max_length=300)
    run_id: str = Field(min_length=1, max_length=200)
    purpose: JobPurpose
    widget_name: str
    code: str
    timeout_s: float = Field(gt=0, le=MAX_TIMEOUT_S)
    context: EventContext
    expires_at: AwareDatetime
    # The business's secrets, still sealed (shared/secrets.py): RabbitMQ never carries plaintext.
    secrets: dict[str, str] = Field(default_factory=dict, max_length=100)

    def log_fields(self) -> dict[str, str]:
        return {**super().log_fields(), "job_id": self.job_id}


class WidgetResult(_Message):
    type: Literal["widget.result"] = "widget.result"
    version: Literal[1] = 1
    job_id: str
    purpose: JobPurpose
    status: WidgetStatus
    duration_ms: int = Field(ge=0)
    data: WidgetOutput | None
    error: WidgetError | None
    logs: str = ""
    logs_truncated: bool = False
    finished_at: datetime


decode_widget_job = TypeAdapter(WidgetJob).validate_json
decode_widget_result = TypeAdapter(WidgetResult).validate_json


def job_id_for(run_id: str, widget_id: str) -> str:
    """Deterministic, so a re-published job is recognised as the same job."""
    return f"{run_id}.{widget_id}"
