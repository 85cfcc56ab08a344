"""The save-time code check, directly and through the widget routes."""

from __future__ import annotations

import httpx
import pytest

from store.code_check import MAX_CODE_BYTES, CodeCheckError, check_widget_code
from tests.store.conftest import WIDGET_CODE, Tenant


def check_error(code: str) -> CodeCheckError:
    with pytest.raises(CodeCheckError) as caught:
        check_widget_code(code)
    return caught.value


def test_valid_code_passes() -> None:
    check_widget_code(WIDGET_CODE)


def test_a_syntax_error_names_its_line() -> None:
    error = check_error("import json\n\ndef get_sidebar_data(context)\n    return {}\n")
    assert error.line == 3
    assert error.message.startswith("line 3: SyntaxError: ")


def test_errors_only_the_compiler_finds_are_reported() -> None:
    error = check_error("def get_sidebar_data(context):\n    return {}\nreturn 1\n")
    assert error.line == 3
    assert error.message == "line 3: SyntaxError: 'return' outside function"


def test_a_missing_entry_point_is_reported() -> None:
    error = check_error("def get_data(context):\n    return {}\n")
    assert error.line is None
    assert "must define get_sidebar_data at top level" in error.message


def test_a_nested_entry_point_does_not_count() -> None:
    error = check_error("class Widget:\n    def get_sidebar_data(self, context):\n        return {}\n")
    assert "must define get_sidebar_data at top level" in error.message


def test_an_async_entry_point_is_rejected() -> None:
    error = check_error("\nasync def get_sidebar_data(context):\n    return {}\n")
    assert error.line == 2
    assert error.message == "line 2: get_sidebar_data must be a plain function, not `async def`"


def test_an_entry_point_without_parameters_is_rejected() -> None:
    error = check_error("def get_sidebar_data():\n    return {}\n")
    assert error.line == 1
    assert "must take the context as its first positional parameter" in error.message


def test_an_entry_point_needing_two_arguments_is_rejected() -> None:
    error = check_error("def get_sidebar_data(context, client):\n    return {}\n")
    assert "requires 2 positional parameters (context, client)" in error.message


def test_an_entry_point_needing_a_keyword_argument_is_rejected() -> None:
    error = check_error("def get_sidebar_data(context, *, client):\n    return {}\n")
    assert "keyword-only parameter(s) client" in error.message


@pytest.mark.parametrize(
    "signature",
    ["context", "context, extra=None", "*args", "context, /", "context, *, client=None", "context, **kwargs"],
)
def test_entry_points_callable_with_one_argument_pass(signature: str) -> None:
    check_widget_code(f"def get_sidebar_data({signature}):\n    return {{}}\n")


def test_a_twice_defined_entry_point_is_judged_by_its_last_definition() -> None:
    check_widget_code("async def get_sidebar_data(context):\n    pass\n\n" + WIDGET_CODE)
    error = check_error(WIDGET_CODE + "\nasync def get_sidebar_data(context):\n    pass\n")
    assert error.line == 4


def test_code_over_64_kib_is_rejected() -> None:
    code = WIDGET_CODE + "#" * MAX_CODE_BYTES
    error = check_error(code)
    assert error.line is None
    assert error.message == f"code is {len(code)} bytes of UTF-8; the limit is 65536 bytes (64 KiB)"


def test_the_size_limit_counts_utf8_bytes_not_characters() -> None:
    padding = "é" * (MAX_CODE_BYTES // 2)  # two bytes each
    error = check_error(WIDGET_CODE + f"# {padding}\n")
    assert "the limit is 65536 bytes" in error.message


def test_nul_bytes_are_rejected() -> None:
    error = check_error(WIDGET_CODE + "\x00")
    assert "cannot be compiled" in error.message or "SyntaxError" in error.message


async def test_creating_a_widget_with_bad_code_is_a_422_naming_the_line(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        tenant.path("/widgets"),
        json={"name": "CRM", "code": "def get_sidebar_data(context):\n    return {\n"},
        headers=tenant.headers,
    )
    assert response.status_code == 422
    body = response.json()
    assert body["line"] == 2
    assert body["detail"].startswith("line 2: SyntaxError: ")
    listed = await client.get(tenant.path("/widgets"), headers=tenant.headers)
    assert listed.json() == []


@pytest.mark.parametrize(
    ("code", "line", "detail_part"),
    [
        ("def other(context):\n    return {}\n", None, "must define get_sidebar_data at top level"),
        ("async def get_sidebar_data(context):\n    return {}\n", 1, "not `async def`"),
        (WIDGET_CODE + "#" * MAX_CODE_BYTES, None, "the limit is 65536 bytes"),
    ],
)
async def test_updating_a_widget_with_bad_code_is_a_422_and_keeps_the_old_code(
    client: httpx.AsyncClient, tenant: Tenant, code: str, line: int | None, detail_part: str
) -> None:
    await client.post(
        tenant.path("/widgets"), json={"widget_id": "w", "name": "W", "code": WIDGET_CODE}, headers=tenant.headers
    )

    response = await client.patch(tenant.path("/widgets/w"), json={"code": code}, headers=tenant.headers)

    assert response.status_code == 422
    assert response.json()["line"] == line
    assert detail_part in response.json()["detail"]
    stored = await client.get(tenant.path("/widgets/w"), headers=tenant.headers)
    assert stored.json()["code"] == WIDGET_CODE
