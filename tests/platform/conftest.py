"""Platform fixtures: the shared machinery on its own schemas and its own bus namespace.

The real services may be running against the run's database (the `stack` fixture), so these
tests never touch a service's schema: they migrate look-alike schemas (`pt_orders`, ...) with
the platform tables only and use a namespace of their own.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from basket.settings import BasketSettings
from orders.settings import OrdersSettings
from shared import db
from shared.bus import EventConsumer, HandlerContext, Subscription, Topology
from shared.contracts import OrderPlaced
from shared.outbox import Relay
from shared.settings import ServiceSettings
from shipping.settings import ShippingSettings
from tests.support import Infra, delete_bus_namespace

EMPTY = Path(__file__).parent / "no_migrations"


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

    async def consumer(self, service: str) -> EventConsumer:
        """A consumer of `order.placed.v1` that records each effect in its schema's effects table."""

        async def record(ctx: HandlerContext, payload: OrderPlaced) -> None:
            await ctx.conn.execute(
                "INSERT INTO effects (consumer, event_id, order_id) VALUES ($1, $2, $3)",
                service,
                ctx.envelope.event_id,
                payload.order_id,
            )

        consumer = EventConsumer(
            self.pools[service],
            self.topology(service),
            {OrderPlaced.routing_key(): Subscription(OrderPlaced, record)},
            prefetch=64,
        )
        assert self.connection is not None
        await consumer.start(self.connection)
        self._stoppable.append(consumer)
        return consumer

    async def effects(self, service: str, order_id: str | None = None) -> int:
        if order_id is None:
            return await self.pools[service].fetchval("SELECT count(*) FROM effects")
        return await self.pools[service].fetchval("SELECT count(*) FROM effects WHERE order_id = $1", order_id)

    async def outbox_rows(self, service: str = "orders") -> int:
        return await self.pools[service].fetchval("SELECT count(*) FROM outbox")


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
                    consumer text NOT NULL, event_id uuid NOT NULL, order_id text NOT NULL
                );
                RESET ROLE;
                TRUNCATE {schema}.effects, {schema}.outbox, {schema}.inbox;
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
