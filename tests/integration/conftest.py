"""Fixtures that open real connections to the per-run RabbitMQ vhost and MongoDB database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from shared.broker import Broker
from shared.mongo import Document, connect_mongo
from tests.infra import Infra


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[AsyncDatabase[Document]]:
    client = connect_mongo(infra.mongodb_url, app_name="tests")
    yield client[infra.mongodb_database]
    await client.close()


@pytest.fixture
async def broker(infra: Infra) -> AsyncIterator[Broker]:
    value = await Broker.connect(infra.rabbitmq_url, prefetch=10, name="tests", connect_timeout_s=10)
    yield value
    await value.close()
