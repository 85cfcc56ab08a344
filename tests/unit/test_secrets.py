"""Secret sealing: round trip, and a ciphertext never opens for another business or name."""

from __future__ import annotations

import base64
import os

import pytest

from shared.secrets import SecretBox, SecretsUnavailable, parse_key

KEY = os.urandom(32)


def test_a_sealed_secret_opens_for_its_business_and_name() -> None:
    box = SecretBox(KEY)
    token = box.seal("acme", "API_KEY", "s3cret")
    assert "s3cret" not in token
    assert box.open("acme", "API_KEY", token) == "s3cret"


@pytest.mark.parametrize(("business", "name"), [("globex", "API_KEY"), ("acme", "OTHER")])
def test_a_sealed_secret_never_opens_elsewhere(business: str, name: str) -> None:
    box = SecretBox(KEY)
    token = box.seal("acme", "API_KEY", "s3cret")
    with pytest.raises(SecretsUnavailable):
        box.open(business, name, token)


def test_another_key_cannot_open_it() -> None:
    token = SecretBox(KEY).seal("acme", "API_KEY", "s3cret")
    with pytest.raises(SecretsUnavailable):
        SecretBox(os.urandom(32)).open("acme", "API_KEY", token)


@pytest.mark.parametrize("encoded", ["not base64!", base64.b64encode(b"short").decode()])
def test_bad_keys_are_rejected_with_a_clear_message(encoded: str) -> None:
    with pytest.raises(ValueError, match="SECRETS_KEY"):
        parse_key(encoded)
