"""The system-test stack: store, executor, two orchestrators and the demo API, started once per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra import Infra
from tests.system.stack import Stack, start_stack


@pytest.fixture(scope="module")
def stack(infra: Infra) -> Iterator[Stack]:
    value = start_stack(infra)
    yield value
    value.stop()
