"""The port between the feed's bookkeeping and the broker: route one business's events to this process, or stop.

``BrokerFeed`` (``feed``) binds its queue on RabbitMQ; ``MemoryBinder``
(``memory_binder``) is the fake the bookkeeping's tests use. One behaviour
suite (tests/store/test_feed_bindings.py) runs against both.
"""

from __future__ import annotations

from typing import Protocol


class Binder(Protocol):
    async def bind(self, business_id: str) -> None:
        """Route the business's ``sidebar.widget`` and ``sidebar.ready`` events to this process once this
        returns. Idempotent. Raises ``TransientError`` when the broker cannot be reached in time."""

    async def unbind(self, business_id: str) -> None:
        """Stop routing them. Idempotent, and unbinding a business never bound is fine. Raises
        ``TransientError`` like ``bind``; the routing may then be either way."""
