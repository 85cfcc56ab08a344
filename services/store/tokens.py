"""Stream tokens: short-lived, signed grants to read one business's live stream.

Browsers' ``EventSource`` cannot send an ``Authorization`` header, so a page
holding a business key trades it for a token and puts that in the stream URL.
A token is ``base64url(JSON {"b": business_id, "exp": unix_seconds})``, a dot,
and ``base64url(HMAC-SHA256(secret, <the first part's ASCII>))``, both without
padding. Every replica derives the same secret, so any of them accepts it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from store.settings import StoreSettings

_DERIVATION_LABEL = b"stream-token"


class InvalidStreamToken(Exception):
    """The token is malformed, forged, expired or for another business; the message says which."""


@dataclass(frozen=True)
class StreamToken:
    token: str
    expires_at: datetime


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _encode(raw) != text:  # the decoder skips stray characters; accept only the one canonical form
        raise ValueError("not canonical unpadded base64url")
    return raw


class StreamTokens:
    """Issues and verifies stream tokens with one secret and one lifetime."""

    def __init__(self, secret: bytes, *, ttl_s: int) -> None:
        self._secret = secret
        self._ttl_s = ttl_s

    @classmethod
    def for_settings(cls, settings: StoreSettings) -> StreamTokens:
        """``STORE_TOKEN_SECRET``, or a key derived from the admin key so replicas agree without one."""
        if settings.store_token_secret is not None:
            secret = settings.store_token_secret.get_secret_value().encode("utf-8")
        else:
            admin_key = settings.store_admin_key.get_secret_value().encode("utf-8")
            secret = hmac.new(admin_key, _DERIVATION_LABEL, hashlib.sha256).digest()
        return cls(secret, ttl_s=settings.store_stream_token_ttl_s)

    def issue(self, business_id: str, *, now: float | None = None) -> StreamToken:
        issued_at = time.time() if now is None else now
        expires = int(issued_at) + self._ttl_s
        payload = _encode(json.dumps({"b": business_id, "exp": expires}, separators=(",", ":")).encode("utf-8"))
        token = f"{payload}.{_encode(self._sign(payload))}"
        return StreamToken(token=token, expires_at=datetime.fromtimestamp(expires, UTC))

    def verify(self, token: str, business_id: str, *, now: float | None = None) -> None:
        """Return if ``token`` is genuine, unexpired and for ``business_id``; raise ``InvalidStreamToken`` if not."""
        payload, dot, signature = token.partition(".")
        try:
            presented = _decode(signature)
        except (binascii.Error, ValueError) as exc:
            raise InvalidStreamToken("invalid stream token") from exc
        # Check the signature before reading anything the token says.
        if not dot or not hmac.compare_digest(presented, self._sign(payload)):
            raise InvalidStreamToken("invalid stream token")
        try:
            claims = json.loads(_decode(payload))
        except (binascii.Error, ValueError) as exc:
            raise InvalidStreamToken("invalid stream token") from exc
        if not isinstance(claims, dict):
            raise InvalidStreamToken("invalid stream token")
        owner, expires = claims.get("b"), claims.get("exp")
        if not isinstance(owner, str) or not isinstance(expires, int) or isinstance(expires, bool):
            raise InvalidStreamToken("invalid stream token")
        if (time.time() if now is None else now) >= expires:
            raise InvalidStreamToken("stream token expired; request a new one")
        if owner != business_id:
            raise InvalidStreamToken("this stream token is for another business")

    def _sign(self, payload: str) -> bytes:
        return hmac.new(self._secret, payload.encode("utf-8"), hashlib.sha256).digest()
