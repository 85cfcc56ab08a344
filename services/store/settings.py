"""Store settings, read once from the environment at start-up (``STORE_ADMIN_KEY``, ...)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_core import PydanticCustomError

from shared.settings import CommonSettings, MongoSettings

MIN_ADMIN_KEY_LENGTH = 16


class StoreSettings(CommonSettings, MongoSettings):
    store_host: str = "127.0.0.1"
    store_port: int = Field(default=8000, ge=0, le=65535)
    store_admin_key: SecretStr
    store_max_body_bytes: int = Field(default=262_144, ge=1024, le=16 * 1024 * 1024)
    # A test run waits for the widget's timeout plus this margin for an executor's reply.
    store_test_run_margin_s: float = Field(default=5.0, ge=0, le=60)
    store_prefetch: int = Field(default=16, ge=1, le=1000)

    @field_validator("store_admin_key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_ADMIN_KEY_LENGTH:
            raise PydanticCustomError(
                "admin_key_too_short", "must be at least {minimum} characters long", {"minimum": MIN_ADMIN_KEY_LENGTH}
            )
        return value
