"""Settings fields common to the services; each service composes its own class.

Values come from environment variables (one per field, upper-cased), read once at
the entry point; an empty variable counts as unset, so a ConfigMap can list every key,
optional ones included. Connection URLs are ``SecretStr`` so they never show in a repr or log.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contracts.errors import describe_errors

S = TypeVar("S", bound=BaseSettings)


class InvalidSettings(SystemExit):
    """Raised at start-up; the message names the variables but never echoes their values."""


def load_settings(cls: type[S]) -> S:
    try:
        return cls()
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        for error in errors:
            error["loc"] = tuple(str(part).upper() for part in error["loc"])
        raise InvalidSettings(f"invalid configuration: {describe_errors(errors)}") from None


def _require_scheme(value: SecretStr, schemes: tuple[str, ...], name: str) -> SecretStr:
    if not value.get_secret_value().startswith(tuple(f"{s}://" for s in schemes)):
        raise ValueError(f"{name} must start with one of: {', '.join(s + '://' for s in schemes)}")
    return value


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_ignore_empty=True)

    rabbitmq_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    log_level: str = Field(default="INFO", pattern="(?i)^(debug|info|warning|error)$")
    metrics_host: str = "127.0.0.1"
    broker_connect_timeout_s: float = Field(default=60.0, gt=0)
    broker_reconnect_interval_s: float = Field(default=1.0, gt=0)
    drain_timeout_s: float = Field(default=35.0, ge=0)

    @field_validator("rabbitmq_url")
    @classmethod
    def _amqp(cls, value: SecretStr) -> SecretStr:
        return _require_scheme(value, ("amqp", "amqps"), "RABBITMQ_URL")


class MongoSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_ignore_empty=True)

    mongodb_url: SecretStr = SecretStr("mongodb://127.0.0.1:27017/")
    mongodb_database: str = Field(default="sidebar", pattern=r"^[A-Za-z0-9_-]{1,60}$")

    @field_validator("mongodb_url")
    @classmethod
    def _mongo(cls, value: SecretStr) -> SecretStr:
        return _require_scheme(value, ("mongodb", "mongodb+srv"), "MONGODB_URL")
