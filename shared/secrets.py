"""Widget secrets at rest and in transit: AES-256-GCM with the business and the
secret's name as associated data, so a ciphertext only ever opens as the secret
of the business it was written for.

The store encrypts on write, MongoDB and RabbitMQ only ever carry ciphertext,
and the executor decrypts per job, for that job's business only.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12


class SecretsUnavailable(RuntimeError):
    """No SECRETS_KEY is configured, or a ciphertext does not open with it."""


def parse_key(encoded: str) -> bytes:
    """``SECRETS_KEY`` is 32 random bytes, base64 encoded (``openssl rand -base64 32``)."""
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("SECRETS_KEY must be base64 (openssl rand -base64 32)") from exc
    if len(key) != 32:
        raise ValueError("SECRETS_KEY must decode to 32 bytes (openssl rand -base64 32)")
    return key


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @staticmethod
    def _associated(business_id: str, name: str) -> bytes:
        return f"{business_id}\x00{name}".encode()

    def seal(self, business_id: str, name: str, value: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode(), self._associated(business_id, name))
        return base64.b64encode(nonce + sealed).decode()

    def open(self, business_id: str, name: str, token: str) -> str:
        try:
            raw = base64.b64decode(token, validate=True)
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._associated(business_id, name))
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SecretsUnavailable(f"secret {name!r} does not open for business {business_id!r}") from exc
        return plain.decode()
