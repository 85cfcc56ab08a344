"""Log redaction: secrets and URL passwords never reach the output."""

from __future__ import annotations

from shared.logging import redact_secrets


def test_secret_looking_keys_are_redacted() -> None:
    event = redact_secrets(None, "info", {"event": "x", "api_key": "sk_123", "Authorization": "Bearer a", "n": 1})
    assert event == {"event": "x", "api_key": "[redacted]", "Authorization": "[redacted]", "n": 1}


def test_passwords_inside_urls_are_redacted() -> None:
    event = redact_secrets(None, "info", {"event": "connect", "url": "amqp://guest:s3cret@rabbit:5672/vh"})
    assert event["url"] == "amqp://[redacted]@rabbit:5672/vh"
    assert "s3cret" not in str(event)


def test_urls_without_credentials_are_kept() -> None:
    event = redact_secrets(None, "info", {"event": "x", "url": "http://127.0.0.1:8000/docs"})
    assert event["url"] == "http://127.0.0.1:8000/docs"
