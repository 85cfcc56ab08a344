"""The widget runtime: what the zygote pre-imports and what widget code sees.

Widgets get the built-in helpers ``log(...)`` and ``secret(name)`` without an
import. HTTPS uses one TLS context built once in the zygote, so a job never
reloads the CA bundle. Threads get 1 MiB stacks: at the default 8 MiB (from
RLIMIT_STACK), the address-space limit would leave room for about three.
"""

from __future__ import annotations

import builtins
import ssl
import sys
import threading
from collections.abc import Mapping
from typing import Any

_tls_context: ssl.SSLContext | None = None
THREAD_STACK_BYTES = 1024 * 1024


class MissingSecret(KeyError):
    """The widget asked for a secret its business has not set."""


def preload(extra_ca_file: str | None) -> None:
    """Import the widget libraries and build the shared TLS context (zygote start-up)."""
    global _tls_context
    import certifi
    import httpx
    import requests
    import requests.adapters

    context = ssl.create_default_context(cafile=certifi.where())
    if extra_ca_file:
        context.load_verify_locations(cafile=extra_ca_file)
    _tls_context = context
    _share_tls_context(requests.adapters, httpx, context)
    threading.stack_size(THREAD_STACK_BYTES)


def _share_tls_context(adapters: Any, httpx: Any, context: ssl.SSLContext) -> None:
    original_cert_verify = adapters.HTTPAdapter.cert_verify

    def cert_verify(self: Any, conn: Any, url: str, verify: Any, cert: Any) -> None:
        original_cert_verify(self, conn, url, verify, cert)
        if verify is True and url.lower().startswith("https"):
            # ``conn`` is urllib3's pool: new connections take ssl_context from conn_kw.
            conn.ca_certs = None
            conn.ca_cert_dir = None
            conn.conn_kw["ssl_context"] = context

    adapters.HTTPAdapter.cert_verify = cert_verify
    original_create = httpx._config.create_ssl_context

    def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> ssl.SSLContext:
        if verify is True and cert is None:
            return context
        return original_create(verify=verify, cert=cert, trust_env=trust_env)  # type: ignore[no-any-return]

    httpx._config.create_ssl_context = create_ssl_context
    for name in ("httpx._transports.default", "httpx._client"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "create_ssl_context"):
            setattr(module, "create_ssl_context", create_ssl_context)  # noqa: B010 - a module's global


def widget_builtins(secrets: Mapping[str, str]) -> dict[str, Any]:
    """Python's builtins plus the helpers, as the widget's ``__builtins__``."""

    def log(*values: object) -> None:
        """Write a line to the run logs (shown by Run Test)."""
        print(*values, flush=True)

    def secret(name: str) -> str:
        """A secret of this widget's business, set through the store API."""
        try:
            return secrets[name]
        except KeyError:
            raise MissingSecret(f"secret {name!r} is not set for this business") from None

    return {**vars(builtins), "log": log, "secret": secret}
