"""One request with each HTTP library inside the zygote, before it forks anything.

A widget's first ``requests.get`` in a fresh child otherwise pays for work that
every child repeats: lazy imports (``netrc``, parts of ``email`` and
``http.client``), regular expressions compiled on first use, urllib3's and
httpx's first-call set-up. Done once here, the children inherit it warm. The
request goes to a listener of the zygote's own on loopback, answered by a
thread that has exited before the first fork. Nothing from the environment or
the home directory (proxies, ``.netrc``) is read: children must not inherit it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import ssl
import tempfile
import threading

_BODY = b'{"warm": true}'
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
    % (len(_BODY), _BODY)
)
_REQUESTS = 2  # one with requests, one with httpx


def warm_up_http() -> None:
    import netrc  # noqa: F401 - imported by requests on a widget's first call; the file is never read here

    import httpx
    import requests

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)
        answering = threading.Thread(target=_answer, args=(listener,), name="warm-up")
        answering.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/warm-up"
        headers = {"Authorization": "Bearer x"}
        try:
            with requests.Session() as session:
                session.trust_env = False
                session.get(url, params={"q": "x"}, headers=headers, timeout=5).json()
            httpx.get(url, params={"q": "x"}, headers=headers, timeout=5, trust_env=False).json()
        finally:
            answering.join(timeout=5)


def _answer(listener: socket.socket) -> None:
    for _ in range(_REQUESTS):
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                request += chunk
            connection.sendall(_RESPONSE)


def warm_up_https() -> None:
    """A TLS handshake with ``requests`` against a throwaway certificate, which the shared
    context rightly refuses: the handshake and verification code is warm, the trust store untouched."""
    import requests

    server_context = _throwaway_server_context()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)
        answering = threading.Thread(target=_handshake, args=(listener, server_context), name="warm-up-tls")
        answering.start()
        try:
            with requests.Session() as session, contextlib.suppress(requests.exceptions.SSLError):
                session.trust_env = False
                session.get(f"https://127.0.0.1:{listener.getsockname()[1]}/warm-up", timeout=5)
        finally:
            answering.join(timeout=5)


def _throwaway_server_context() -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "warm-up.invalid")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(minutes=5))
        .sign(key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "warm-up.pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as pem:
            pem.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
            pem.write(certificate.public_bytes(serialization.Encoding.PEM))
        context.load_cert_chain(path)
    return context


def _handshake(listener: socket.socket, context: ssl.SSLContext) -> None:
    try:
        connection, _ = listener.accept()
    except OSError:
        return
    with connection, contextlib.suppress(OSError):
        connection.settimeout(5)
        with context.wrap_socket(connection, server_side=True):
            pass
