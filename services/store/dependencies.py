"""What request handlers depend on, how it is opened and closed, and how a handler gets it.

``open_store`` connects MongoDB and RabbitMQ and yields a frozen
``StoreDependencies``; the app's lifespan uses it, and tests call it directly
(httpx's ASGITransport runs no lifespan) and pass the result to ``create_app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from shared.broker import Broker
from shared.health import Health, mongo_reachable
from shared.mongo import connect_mongo
from shared.secrets import SecretBox, parse_key
from store.events import EventPublisher
from store.metrics import StoreMetrics
from store.push.bindings import FeedBindings
from store.push.feed import BrokerFeed
from store.push.hub import PushHub
from store.repositories.businesses import BusinessRepository
from store.repositories.conversations import ConversationRepository
from store.repositories.customers import CustomerRepository
from store.repositories.messages import MessageRepository
from store.repositories.secrets import SecretRepository
from store.repositories.sidebars import SidebarRepository
from store.repositories.widgets import WidgetRepository
from store.settings import StoreSettings
from store.test_runs import TestRunClient
from store.tokens import StreamTokens

SERVICE_NAME = "store"


@dataclass(frozen=True)
class StoreDependencies:
    settings: StoreSettings
    metrics: StoreMetrics
    businesses: BusinessRepository
    customers: CustomerRepository
    conversations: ConversationRepository
    widgets: WidgetRepository
    sidebars: SidebarRepository
    events: EventPublisher
    test_runs: TestRunClient
    messages: MessageRepository
    push: PushHub
    # A stream awaits ``feed_bindings.watch`` before it subscribes to ``push``.
    feed_bindings: FeedBindings
    stream_tokens: StreamTokens
    secrets: SecretRepository
    # None when SECRETS_KEY is unset: the secrets routes then answer 503.
    secret_box: SecretBox | None
    health: Health


@asynccontextmanager
async def open_store(
    settings: StoreSettings, *, metrics: StoreMetrics | None = None
) -> AsyncIterator[StoreDependencies]:
    """Connect everything the handlers need; close it all, in reverse order, on exit."""
    metrics = metrics if metrics is not None else StoreMetrics()
    health = Health()
    async with AsyncExitStack() as stack:
        client = connect_mongo(
            settings.mongodb_url.get_secret_value(), app_name=SERVICE_NAME, commands=metrics.db_commands
        )
        stack.push_async_callback(client.close)
        health.require("mongodb", mongo_reachable(client))
        db = client[settings.mongodb_database]
        businesses = BusinessRepository(db)
        customers = CustomerRepository(db)
        conversations = ConversationRepository(db)
        widgets = WidgetRepository(db)
        messages = MessageRepository(db)
        secrets = SecretRepository(db)
        for repository in (businesses, customers, conversations, widgets, messages, secrets):
            await repository.ensure_indexes()
        broker = await Broker.connect(
            settings.rabbitmq_url.get_secret_value(),
            prefetch=1,  # the store consumes without acks only (replies, the live feed): a prefetch limits nothing
            name=SERVICE_NAME,
            connect_timeout_s=settings.broker_connect_timeout_s,
            reconnect_interval_s=settings.broker_reconnect_interval_s,
        )
        stack.push_async_callback(broker.close)
        health.require("broker", broker.is_connected)
        test_runs = await TestRunClient.start(broker, metrics, secrets, margin_s=settings.store_test_run_margin_s)
        stack.push_async_callback(test_runs.close)
        push = PushHub(metrics, buffer_events=settings.store_stream_buffer_events)
        stack.callback(push.close)
        feed = await BrokerFeed.start(broker, push, metrics)
        stack.push_async_callback(feed.close)
        feed_bindings = FeedBindings(feed, push, metrics)
        feed_bindings.start()
        stack.push_async_callback(feed_bindings.close)
        stack.callback(health.stop_serving)
        health.start_serving()
        yield StoreDependencies(
            settings=settings,
            metrics=metrics,
            businesses=businesses,
            customers=customers,
            conversations=conversations,
            widgets=widgets,
            sidebars=SidebarRepository(db),
            events=EventPublisher(broker, metrics),
            test_runs=test_runs,
            messages=messages,
            push=push,
            feed_bindings=feed_bindings,
            stream_tokens=StreamTokens.for_settings(settings),
            secrets=secrets,
            secret_box=_secret_box(settings),
            health=health,
        )


def _secret_box(settings: StoreSettings) -> SecretBox | None:
    if settings.secrets_key is None:
        return None
    return SecretBox(parse_key(settings.secrets_key.get_secret_value()))


async def get_dependencies(request: Request) -> StoreDependencies:
    dependencies = getattr(request.app.state, "dependencies", None)
    if not isinstance(dependencies, StoreDependencies):
        raise RuntimeError("the store's dependencies are not open: run the app with its lifespan or pass them")
    return dependencies


Deps = Annotated[StoreDependencies, Depends(get_dependencies)]
