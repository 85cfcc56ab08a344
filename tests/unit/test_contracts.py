"""Decoding of the external and internal contracts: ids, timezones, unknown fields."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared.contracts.errors import describe_validation_error
from shared.contracts.events import decode_conversation_opened

VALID = {"event_id": "e-1", "business_id": "acme", "conversation_id": "c_1", "occurred_at": "2026-01-01T00:00:00Z"}


def _decode_error(body: dict[str, object] | bytes) -> str:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ValidationError) as caught:
        decode_conversation_opened(raw)
    return describe_validation_error(caught.value)


def test_a_minimal_event_decodes_without_context() -> None:
    event = decode_conversation_opened(json.dumps(VALID).encode())
    assert event.context is None
    assert event.agent_id is None


def test_an_event_with_context_and_null_customer_decodes() -> None:
    context = {"conversation": {"id": "c_1"}, "customer": None, "business": {"id": "acme"}}
    event = decode_conversation_opened(json.dumps({**VALID, "agent_id": "a1", "context": context}).encode())
    assert event.context is not None and event.context.customer is None


@pytest.mark.parametrize("bad_id", ["", "a b", "a.b", "x" * 129, "é", "a:b"])
def test_ids_outside_the_pattern_are_rejected(bad_id: str) -> None:
    assert "business_id: string should match pattern" in _decode_error({**VALID, "business_id": bad_id})


def test_occurred_at_needs_a_timezone() -> None:
    assert "occurred_at" in _decode_error({**VALID, "occurred_at": "2026-01-01T00:00:00"})


@pytest.mark.parametrize(
    "value", [1767225600, "1767225600", "2026-01-01 00:00:00Z", "2026-01-01T00:00:00+0100", "2026-01-01"]
)
def test_occurred_at_must_be_an_rfc3339_timestamp(value: object) -> None:
    assert "occurred_at" in _decode_error({**VALID, "occurred_at": value})


def test_occurred_at_accepts_offsets_and_fractions() -> None:
    for value in ("2026-01-01T00:00:00.123456Z", "2026-01-01T01:00:00+01:00"):
        assert decode_conversation_opened(json.dumps({**VALID, "occurred_at": value}).encode()).occurred_at


def test_unknown_fields_are_rejected() -> None:
    assert "surprise: unknown field" in _decode_error({**VALID, "surprise": 1})


def test_garbage_is_reported_as_invalid_json() -> None:
    assert "invalid JSON" in _decode_error(b"{not json")


def test_context_needs_all_three_parts() -> None:
    message = _decode_error({**VALID, "context": {"conversation": {}, "business": {}}})
    assert "context.customer: required field is missing" in message
