"""Session-wide fixtures: every test run gets its own RabbitMQ vhost and MongoDB database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra import Infra, provision_infra


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with provision_infra() as value:
        yield value
