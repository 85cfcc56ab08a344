"""Store settings, read once from the environment at start-up (``STORE_ADMIN_KEY``, ...)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_core import PydanticCustomError

from shared.secrets import parse_key
from shared.settings import CommonSettings, MongoSettings

MIN_SECRET_LENGTH = 16


class StoreSettings(CommonSettings, MongoSettings):
    store_host: str = "127.0.0.1"
    store_port: int = Field(default=8000, ge=0, le=65535)
    store_admin_key: SecretStr
    store_max_body_bytes: int = Field(default=262_144, ge=1024, le=16 * 1024 * 1024)
    # A request body that stops arriving for this long is a 400 (a body shorter than its Content-Length).
    store_body_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # A test run waits for the widget's timeout plus this margin for an executor's reply.
    store_test_run_margin_s: float = Field(default=5.0, ge=0, le=60)
    # Signs stream tokens; None derives one from the admin key, so replicas agree without it.
    store_token_secret: SecretStr | None = None
    store_stream_token_ttl_s: int = Field(default=300, ge=1, le=86_400)
    store_stream_keepalive_s: float = Field(default=15.0, gt=0, le=300)
    store_stream_buffer_events: int = Field(default=500, ge=1, le=100_000)
    # The public chat API takes a burst of this many messages per visitor, refilled over the window.
    store_chat_burst: int = Field(default=10, ge=1, le=1000)
    store_chat_window_s: float = Field(default=10.0, gt=0, le=3600)
    # Seals widget secrets (shared/secrets.py); the executors open them with the same key. None turns secrets off.
    secrets_key: SecretStr | None = None

    @field_validator("store_admin_key", "store_token_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise PydanticCustomError(
                "secret_too_short", "must be at least {minimum} characters long", {"minimum": MIN_SECRET_LENGTH}
            )
        return value

    @field_validator("secrets_key")
    @classmethod
    def _valid_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_key(value.get_secret_value())
        return value
