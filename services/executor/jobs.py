"""The job handler: run one widget job, validate its output, publish the result.

Every job names in its AMQP ``reply_to`` the private queue of whoever published
it (the orchestrator replica that owns the run, or the store awaiting a test
run); the result is published to ``sidebar.internal`` with that queue's name as
routing key. A job that waited past its expiry is not run: its sidebar has been
assembled already (or its test run answered), so it is reported ``expired``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from executor.metrics import ExecutorMetrics
from executor.runner import RunOutcome, RunRequest, WidgetRunner
from shared.broker import Broker, OutgoingMessage
from shared.consumer import Delivery
from shared.contracts.events import WidgetError, WidgetStatus
from shared.contracts.jobs import WidgetJob, WidgetResult
from shared.contracts.widget_output import InvalidWidgetOutput, WidgetOutput, validate_widget_output
from shared.errors import PermanentError
from shared.secrets import SecretBox, SecretsUnavailable
from shared.topology import INTERNAL_EXCHANGE

log = structlog.get_logger(__name__)

EXPIRED_MESSAGE = "job expired before an executor could run it"


def kill_reason(outcome: RunOutcome) -> str | None:
    if outcome.status == "timeout":
        return "timeout"
    if outcome.error_type in ("memory", "cpu_limit"):
        return "memory" if outcome.error_type == "memory" else "cpu"
    if outcome.error_type == "crashed" and "signal" in (outcome.error_message or ""):
        return "signal"
    return None


def result_for(job: WidgetJob, outcome: RunOutcome | None) -> WidgetResult:
    """Turn a raw run outcome into a result, validating the return format; no outcome
    means the job expired before it could run."""
    if outcome is None:
        return _result(job, "expired", 0, None, WidgetError(type="expired", message=EXPIRED_MESSAGE))
    status, data, error = outcome.status, None, None
    if outcome.status == "ok":
        try:
            data = validate_widget_output(outcome.value)
        except InvalidWidgetOutput as exc:
            status = "error"
            error = WidgetError(type="invalid_return", message=f"return value does not match the format: {exc}")
    else:
        error = WidgetError(type=outcome.error_type or outcome.status, message=outcome.error_message or "")
    return _result(
        job, status, round(outcome.duration_s * 1000), data, error, outcome.logs, logs_truncated=outcome.logs_truncated
    )


def _result(
    job: WidgetJob,
    status: WidgetStatus,
    duration_ms: int,
    data: WidgetOutput | None,
    error: WidgetError | None,
    logs: str = "",
    *,
    logs_truncated: bool = False,
) -> WidgetResult:
    return WidgetResult(
        job_id=job.job_id,
        run_id=job.run_id,
        purpose=job.purpose,
        business_id=job.business_id,
        conversation_id=job.conversation_id,
        widget_id=job.widget_id,
        status=status,
        duration_ms=duration_ms,
        data=data,
        error=error,
        logs=logs,
        logs_truncated=logs_truncated,
        finished_at=datetime.now(UTC),
    )


@dataclass(frozen=True)
class JobHandler:
    runner: WidgetRunner
    broker: Broker
    metrics: ExecutorMetrics
    secrets: SecretBox | None = None

    async def __call__(self, job: WidgetJob, delivery: Delivery) -> None:
        if not delivery.reply_to:
            raise PermanentError("a widget job needs an AMQP reply_to: the queue its result goes to")
        outcome = await self._run(job)
        result = result_for(job, outcome)
        self.metrics.jobs.labels(job.purpose, result.status).inc()
        if outcome is not None:
            self.metrics.widget_duration.labels(result.status).observe(outcome.duration_s)
            if outcome.widget_s is not None:
                self.metrics.sandbox_overhead.observe(max(0.0, outcome.duration_s - outcome.widget_s))
            if outcome.worker_start is not None:
                self.metrics.workers.labels(outcome.worker_start).inc()
            if (reason := kill_reason(outcome)) is not None:
                self.metrics.kills.labels(reason).inc()
        await self._publish(result, delivery.reply_to, delivery.correlation_id)
        log.info(
            "widget.finished",
            status=result.status,
            duration_ms=result.duration_ms,
            error_type=result.error.type if result.error else None,
        )

    async def _run(self, job: WidgetJob) -> RunOutcome | None:
        """The job's outcome, or None when it expired before it could run."""
        remaining = (job.expires_at - datetime.now(UTC)).total_seconds()
        if remaining <= 0:
            return None
        try:
            secrets = self._open_secrets(job)
        except SecretsUnavailable as exc:
            return RunOutcome("error", 0.0, error_type="secrets_unavailable", error_message=str(exc))
        self.metrics.in_flight.inc()
        try:
            return await self.runner.run(
                RunRequest(
                    code=job.code,
                    context=job.context.model_dump(),
                    timeout_s=min(job.timeout_s, remaining),
                    secrets=secrets,
                    business_id=job.business_id,
                    widget_id=job.widget_id,
                )
            )
        finally:
            self.metrics.in_flight.dec()

    def _open_secrets(self, job: WidgetJob) -> dict[str, str]:
        """Plaintext only here, for this job's business; it reaches the widget through its private pipe."""
        if not job.secrets:
            return {}
        if self.secrets is None:
            raise SecretsUnavailable("this executor has no SECRETS_KEY, so it cannot open the business's secrets")
        opened = {}
        for name, sealed in job.secrets.items():
            try:
                opened[name] = self.secrets.open(job.business_id, name, sealed)
            except SecretsUnavailable:
                # Sealed with another key (rotated, or an old dev run): only secret(name) fails.
                log.warning("secret.unopenable", secret_name=name)
        return opened

    async def _publish(self, result: WidgetResult, reply_to: str, correlation_id: str | None) -> None:
        message = OutgoingMessage(
            result.model_dump_json().encode(),
            message_type="widget.result",
            message_id=result.job_id,
            correlation_id=correlation_id or result.job_id,
        )
        # Not mandatory: a reply queue is gone only with its owner, whose run is re-run by
        # whoever takes over its event.
        await self.broker.publish(INTERNAL_EXCHANGE, reply_to, message, mandatory=False)
        self.metrics.results.labels(result.purpose).inc()
