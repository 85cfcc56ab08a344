"""One request with each HTTP library, and one TLS handshake, inside the zygote before it forks.

A widget's first ``requests.get`` in a fresh child otherwise pays for work that
every child repeats: lazy imports (``netrc``, parts of ``email`` and
``http.client``), regular expressions compiled on first use, urllib3's and
httpx's first-call set-up, the TLS handshake path. Done once here, the children
inherit it warm.

The answers come from a short-lived process forked for the purpose, on
loopback listeners it alone keeps open. Not from a thread: a thread that
allocates leaves a malloc arena (64 MiB of address space) in the zygote, which
every child would inherit under its address-space limit. The TLS certificate is
a throwaway made in that process, which the shared context rightly refuses: the
handshake and verification code is warm, the trust store untouched. Nothing is
read from the environment or the home directory (proxies, ``.netrc``).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import ssl
import tempfile

_BODY = b'{"warm": true}'
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
    % (len(_BODY), _BODY)
)
_PLAIN_REQUESTS = 2  # one with requests, one with httpx
_TIMEOUT_S = 5.0


def warm_up_http_clients() -> None:
    import netrc  # noqa: F401 - imported by requests on a widget's first call; the file is never read here

    import httpx
    import requests

    plain = socket.create_server(("127.0.0.1", 0))
    tls = socket.create_server(("127.0.0.1", 0))
    pid = os.fork()
    if pid == 0:  # the answering process: never returns
        code = 1
        try:
            _answer(plain, tls)
            code = 0
        finally:
            os._exit(code)
    plain_port, tls_port = plain.getsockname()[1], tls.getsockname()[1]
    plain.close()
    tls.close()
    plain_url, headers = f"http://127.0.0.1:{plain_port}/warm-up", {"Authorization": "Bearer x"}
    try:  # in the order the answering process serves them: two plain requests, then the handshake
        with requests.Session() as session:
            session.trust_env = False
            session.get(plain_url, params={"q": "x"}, headers=headers, timeout=_TIMEOUT_S).json()
            httpx.get(plain_url, params={"q": "x"}, headers=headers, timeout=_TIMEOUT_S, trust_env=False).json()
            with contextlib.suppress(requests.exceptions.SSLError):
                session.get(f"https://127.0.0.1:{tls_port}/warm-up", timeout=_TIMEOUT_S)
    finally:
        os.waitpid(pid, 0)


def _answer(plain: socket.socket, tls: socket.socket) -> None:
    plain.settimeout(_TIMEOUT_S)
    for _ in range(_PLAIN_REQUESTS):
        connection, _ = plain.accept()
        with connection:
            connection.settimeout(_TIMEOUT_S)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                request += chunk
            connection.sendall(_RESPONSE)
    tls.settimeout(_TIMEOUT_S)
    connection, _ = tls.accept()
    with connection, contextlib.suppress(OSError):
        connection.settimeout(_TIMEOUT_S)
        with _throwaway_server_context().wrap_socket(connection, server_side=True):
            pass


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
