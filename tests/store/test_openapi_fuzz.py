"""Schemathesis over the store's whole OpenAPI, against ``python -m store`` with a business key.

Every operation gets generated requests, valid and invalid (schemathesis's
examples, coverage and fuzzing phases), with a bounded count each; no answer
may be a 5xx, and every answer must match the schema: its status, content
type, headers and body. Admin operations get the admin key; all the others
the key of one business, whose id fills every ``business_id``.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.infra import Infra
from tests.store.conftest import ADMIN, ADMIN_KEY, StoreProcess, Tenant, running_store, unique_id

MAX_EXAMPLES = 10
SEED = 20261205
RUN_LIMIT_S = 110
STREAM_READ_S = 0.25
ADMIN_OPERATIONS = ("POST /v1/businesses", "POST /v1/businesses/{business_id}/api-keys")
# Checks of answers: no 5xx, and each one as the schema documents it.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "ignored_auth",
    "unsupported_method",
    "allow_header_conformance",
)


@pytest.fixture(scope="module")
def fuzzed_store(infra: Infra) -> Iterator[StoreProcess]:
    secrets_key = base64.b64encode(os.urandom(32)).decode()
    # No generated code passes the code check, so no widget exists to Run Test: no executor is needed.
    with running_store(infra, "store-fuzz", SECRETS_KEY=secrets_key, STORE_TEST_RUN_MARGIN_S="0") as running:
        yield running


@pytest.fixture(scope="module")
def business(fuzzed_store: StoreProcess) -> Tenant:
    business_id = unique_id("fuzz")
    response = httpx.post(
        f"{fuzzed_store.url}/v1/businesses", json={"business_id": business_id, "name": "Fuzz"}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return Tenant(business_id, response.json()["api_key"])


def config_toml(business: Tenant) -> str:
    """schemathesis.toml: the business's id and key everywhere, the admin key on admin operations."""
    admin = "".join(
        f'[[operations]]\ninclude-name = "{name}"\nheaders = {{ Authorization = "Bearer {ADMIN_KEY}" }}\n\n'
        for name in ADMIN_OPERATIONS
    )
    checks = "".join(f"{name}.enabled = true\n" for name in CHECKS)
    return f"""\
seed = {SEED}
request-timeout = 5
headers = {{ Authorization = "Bearer {business.api_key}" }}

[parameters]
"path.business_id" = "{business.business_id}"

[generation]
max-examples = {MAX_EXAMPLES}
database = "none"

[phases.stateful]
enabled = false

[cache]
enabled = false

[checks]
enabled = false
{checks}
# An open event stream never ends: check what it sent in its first moments.
[[operations]]
include-name = "GET /v1/businesses/{{business_id}}/stream"
request-timeout = {STREAM_READ_S}

{admin}"""


def test_generated_requests_get_no_5xx_and_answers_the_schema_documents(
    fuzzed_store: StoreProcess, business: Tenant, tmp_path: Path
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(config_toml(business))

    cli = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color"]
    # One worker: hypothesis's lambda descriptions call ast.parse, which Python 3.11 can't run in two threads.
    result = subprocess.run(
        [*cli, "run", "--workers", "1", f"{fuzzed_store.url}/openapi.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_S,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-20_000:] + result.stderr[-5_000:]
