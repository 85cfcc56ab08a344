"""Fixtures for the store: its dependencies opened against the test run's RabbitMQ vhost
and database, an in-process HTTP client, businesses with their keys, and the store
started as its own process (``python -m store``) for what only a real server shows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import Document, connect_mongo
from store.app import create_app
from store.dependencies import StoreDependencies, open_store
from store.settings import StoreSettings
from tests.infra import Infra
from tests.system.harness import ServiceProcess, base_env, free_port, python_module, wait_http

ADMIN_KEY = "test-admin-key-not-secret"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
MAX_BODY_BYTES = 128 * 1024
TEST_RUN_MARGIN_S = 0.3

WIDGET_CODE = "def get_sidebar_data(context):\n    return {'title': 'CRM', 'items': []}\n"


@dataclass(frozen=True)
class Tenant:
    business_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def path(self, suffix: str = "") -> str:
        return f"/v1/businesses/{self.business_id}{suffix}"


def unique_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def store_settings(infra: Infra) -> StoreSettings:
    return StoreSettings(
        rabbitmq_url=infra.rabbitmq_url,
        mongodb_url=infra.mongodb_url,
        mongodb_database=infra.mongodb_database,
        store_admin_key=ADMIN_KEY,
        store_max_body_bytes=MAX_BODY_BYTES,
        store_test_run_margin_s=TEST_RUN_MARGIN_S,
        broker_connect_timeout_s=5.0,
    )


@asynccontextmanager
async def store_client(settings: StoreSettings, deps: StoreDependencies) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client driving the app in-process (ASGITransport runs no lifespan, hence ``deps``)."""
    app = create_app(settings, dependencies=deps)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://store") as http:
        yield http


async def create_tenant(client: httpx.AsyncClient) -> Tenant:
    business_id = unique_id("biz")
    response = await client.post("/v1/businesses", json={"business_id": business_id, "name": "Acme"}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return Tenant(business_id, response.json()["api_key"])


@pytest.fixture
def settings(infra: Infra) -> StoreSettings:
    return store_settings(infra)


@pytest.fixture
async def deps(settings: StoreSettings) -> AsyncIterator[StoreDependencies]:
    async with open_store(settings) as opened:
        yield opened


@pytest.fixture
async def client(settings: StoreSettings, deps: StoreDependencies) -> AsyncIterator[httpx.AsyncClient]:
    async with store_client(settings, deps) as http:
        yield http


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[AsyncDatabase[Document]]:
    """Direct access to the test database, to check and seed what other services read and write."""
    mongo: AsyncMongoClient[Document] = connect_mongo(infra.mongodb_url, app_name="store-tests")
    try:
        yield mongo[infra.mongodb_database]
    finally:
        await mongo.close()


NewTenant = Callable[[], Awaitable[Tenant]]


@pytest.fixture
def new_tenant(client: httpx.AsyncClient) -> NewTenant:
    return partial(create_tenant, client)


@pytest.fixture
async def tenant(new_tenant: NewTenant) -> Tenant:
    return await new_tenant()


@dataclass(frozen=True)
class StoreProcess:
    """``python -m store`` serving on loopback, its JSON log lines readable as they arrive."""

    process: ServiceProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def running_store(infra: Infra, name: str, **env: str) -> Iterator[StoreProcess]:
    """Start the store with the test run's broker and database (``env`` adds settings); stop it on exit."""
    port = free_port()
    settings = {**infra.env(), "STORE_ADMIN_KEY": ADMIN_KEY, "STORE_PORT": str(port), **env}
    process = python_module(name, "store", base_env(settings)).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
        yield StoreProcess(process, port)
    finally:
        process.stop()
