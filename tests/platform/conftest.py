"""Platform fixtures: the shared machinery on its own schemas and its own bus namespace.

The real services may be running against the run's database (the `stack` fixture), so these
tests never touch a service's schema: they migrate look-alike schemas (`pt_orders`, ...) with
the platform tables only and use a namespace of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest

from basket.settings import BasketSettings
from orders.settings import OrdersSettings
from shared import db
from shared.bus import EventConsumer, EventHandler, Subscription, Topology
from shared.contracts import OrderPlaced
from shared.outbox import Relay
from shared.settings import ServiceSettings
from shared.uow import UnitOfWork, unit_of_work
from shipping.settings import ShippingSettings
from tests.support import Infra, delete_bus_namespace

EMPTY = Path(__file__).parent / "no_migrations"


def placed(order_id: str) -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id,
        attempt_id=uuid.uuid4(),
        basket_id="b" * 24,
        reference="2026-11-0001",
        status="payment-received",
        order_total=1200,
        currency="GBP",
        lines=[],
        placed_at=datetime.now(UTC),
    )


async def record_effect(uow: UnitOfWork, order_id: str) -> None:
    """The change a test's unit of work makes: one row in its schema's effects table."""
    await uow.conn.execute(
        "INSERT INTO effects (consumer, event_id, order_id) VALUES ($1, $2, $3)",
        uow.producer,
        uow.causation_id,
        order_id,
    )


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await predicate():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Platform:
    infra: Infra
    namespace: str
    settings: dict[str, ServiceSettings]
    pools: dict[str, asyncpg.Pool] = field(default_factory=dict)
    connection: aio_pika.abc.AbstractRobustConnection | None = None
    _stoppable: list = field(default_factory=list)

    def topology(self, service: str) -> Topology:
        return Topology(self.namespace, service, delivery_limit=5, retry_delays_ms=(100, 200))

    async def relay(self, service: str = "orders", relay_cls: type[Relay] = Relay) -> Relay:
        relay = relay_cls(
            self.pools[service],
            self.settings[service].db_schema,
            self.topology(service).events_exchange,
            poll_interval=0.2,
            listen_dsn=self.settings[service].database_url,
        )
        assert self.connection is not None
        await relay.start(self.connection)
        self._stoppable.append(relay)
        return relay

    async def consumer(self, service: str, handler: EventHandler | None = None, **kwargs: Any) -> EventConsumer:
        """A started consumer of `order.placed.v1`; by default its handler records one effect."""

        async def on_order_placed(uow: UnitOfWork, event: OrderPlaced) -> None:
            await record_effect(uow, event.order_id)

        consumer = self.idle_consumer(service, handler or on_order_placed, **kwargs)
        assert self.connection is not None
        await consumer.start(self.connection)
        self._stoppable.append(consumer)
        return consumer

    def idle_consumer(self, service: str, handler: EventHandler, **kwargs: Any) -> EventConsumer:
        """A consumer not attached to the broker: tests deliver with `handle` themselves."""
        kwargs.setdefault("prefetch", 64)
        return EventConsumer(
            self.pools[service], self.topology(service), [Subscription(OrderPlaced, handler)], **kwargs
        )

    async def announce(self, order_id: str, *, commit: bool = True, relay: Relay | None = None) -> None:
        """What an HTTP handler of orders does: a change (an effect) and its event, in a unit of work."""
        with contextlib.suppress(RolledBack):
            async with unit_of_work(self.pools["orders"], "orders", relay=relay) as uow:
                await record_effect(uow, order_id)
                uow.emit(placed(order_id))
                if not commit:
                    raise RolledBack

    async def effects(self, service: str, order_id: str | None = None) -> int:
        if order_id is None:
            return await self.pools[service].fetchval("SELECT count(*) FROM effects")
        return await self.pools[service].fetchval("SELECT count(*) FROM effects WHERE order_id = $1", order_id)

    async def outbox_rows(self, service: str = "orders") -> int:
        return await self.pools[service].fetchval("SELECT count(*) FROM outbox")

    async def inbox_rows(self, service: str) -> int:
        return await self.pools[service].fetchval("SELECT count(*) FROM inbox")


class RolledBack(Exception):
    """Raised inside a unit of work to make it roll back."""


@pytest.fixture
async def platform(infra: Infra) -> AsyncIterator[Platform]:
    namespace = f"{infra.namespace}p{secrets.token_hex(3)}"
    settings: dict[str, ServiceSettings] = {
        "orders": infra.settings(OrdersSettings, db_schema="pt_orders", bus_namespace=namespace),
        "basket": infra.settings(BasketSettings, db_schema="pt_basket", bus_namespace=namespace),
        "shipping": infra.settings(ShippingSettings, db_schema="pt_shipping", bus_namespace=namespace),
    }
    admin = await asyncpg.connect(infra.admin_dsn)
    try:
        for service_settings in settings.values():
            await db.migrate(service_settings, EMPTY)
            schema = service_settings.db_schema
            await admin.execute(
                f"""
                SET ROLE {schema}_owner;
                CREATE TABLE IF NOT EXISTS {schema}.effects (
                    consumer text NOT NULL, event_id uuid, order_id text NOT NULL
                );
                CREATE TABLE IF NOT EXISTS {schema}.counters (
                    id text PRIMARY KEY, value integer NOT NULL, version integer NOT NULL
                );
                RESET ROLE;
                TRUNCATE {schema}.effects, {schema}.counters, {schema}.outbox, {schema}.inbox;
                """
            )
    finally:
        await admin.close()
    platform = Platform(infra, namespace, settings)
    for service, service_settings in settings.items():
        platform.pools[service] = await db.create_pool(service_settings)
    platform.connection = await aio_pika.connect_robust(infra.amqp_url)
    try:
        yield platform
    finally:
        for item in reversed(platform._stoppable):
            await item.stop()
        await platform.connection.close()
        for pool in platform.pools.values():
            await pool.close()
        await delete_bus_namespace(infra.amqp_url, namespace)
