"""Fixtures of the orders tests: an in-process orders app on its own schema and bus namespace,
with in-test stand-ins for the other services (request/reply responders and event peers).

The orders app here runs beside the session's real stack (started by cross-service tests), so
it gets its own schema (`orders_it`) and bus namespace (`<run>o`): the stack's orders relay
must never publish this app's outbox rows, and the stack's basket must never answer its
requests. Both are dropped with the run's database / at the end of the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest

from orders.__main__ import MIGRATIONS
from orders.app import create_app
from orders.settings import OrdersSettings
from shared import db
from shared.bus import RpcServer, Topology, declare_topology
from shared.contracts import Contract, Envelope, envelope_for
from tests.support import delete_bus_namespace

sys.path.insert(0, str(Path(__file__).parent))

from orders_testkit import FakeShipping, Payments, Store

SCHEMA = "orders_it"


@pytest.fixture(scope="session")
def orders_settings(infra: Any) -> Iterator[OrdersSettings]:
    settings = infra.settings(
        OrdersSettings,
        db_schema=SCHEMA,
        database_url=infra.runtime_dsn(SCHEMA),
        bus_namespace=f"{infra.namespace}o",
        rpc_timeout=2.0,
        process_deadline=10.0,
        process_poll_interval=0.5,
    )
    asyncio.run(db.migrate(settings, MIGRATIONS))
    yield settings
    asyncio.run(delete_bus_namespace(settings.amqp_url, settings.bus_namespace))


@pytest.fixture
def settings(orders_settings: OrdersSettings) -> OrdersSettings:
    return orders_settings.model_copy()


@pytest.fixture
async def pool(settings: OrdersSettings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def broker(settings: OrdersSettings) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(settings.amqp_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def shipping() -> FakeShipping:
    return FakeShipping()


@pytest.fixture
def payments() -> Payments:
    return Payments()


@pytest.fixture
async def responders(
    settings: OrdersSettings, broker: Any, store: Store, shipping: FakeShipping, payments: Payments
) -> AsyncIterator[None]:
    """basket.snapshot, shipping.quote and payment.resolve answered by in-test responders."""
    servers = [
        RpcServer(Topology(settings.bus_namespace, "basket"), {"basket.snapshot": store.snapshot}),
        RpcServer(Topology(settings.bus_namespace, "shipping"), {"shipping.quote": shipping.quote}),
        RpcServer(Topology(settings.bus_namespace, "payments"), {"payment.resolve": payments.resolve}),
    ]
    for server in servers:
        await server.start(broker)
    try:
        yield
    finally:
        for server in servers:
            await server.stop()


@pytest.fixture
async def app_factory(aiohttp_client: Any) -> Callable[..., Awaitable[Any]]:
    async def make(settings: OrdersSettings) -> Any:
        return await aiohttp_client(create_app(settings))

    return make


@pytest.fixture
async def client(app_factory: Any, settings: OrdersSettings, responders: None) -> Any:
    return await app_factory(settings)


class Peer:
    """Another service on the bus: its event queue (what orders sent it) and its publisher."""

    def __init__(self, broker: Any, namespace: str, service: str) -> None:
        self.broker = broker
        self.topology = Topology(namespace, service)
        self.received: asyncio.Queue[Envelope] = asyncio.Queue()
        self.on_event: Callable[[Envelope], Awaitable[None]] | None = None
        self._channel: Any = None
        self._exchange: Any = None

    async def start(self) -> None:
        self._channel = await self.broker.channel()
        queue = await declare_topology(self._channel, self.topology)
        assert queue is not None
        await queue.purge()
        self._exchange = await self._channel.get_exchange(self.topology.events_exchange)
        await queue.consume(self._deliver)

    async def stop(self) -> None:
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def _deliver(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            envelope = Envelope.model_validate_json(message.body)
            await self.received.put(envelope)
            if self.on_event is not None:
                await self.on_event(envelope)

    async def publish(self, payload: Contract, envelope: Envelope | None = None) -> Envelope:
        envelope = envelope or envelope_for(payload, self.topology.service)
        await self._exchange.publish(
            aio_pika.Message(
                envelope.model_dump_json().encode(),
                content_type="application/json",
                message_id=str(envelope.event_id),
                type=envelope.routing_key,
            ),
            routing_key=envelope.routing_key,
        )
        return envelope

    async def next(self, routing_key: str, timeout: float = 10.0) -> Envelope:
        async with asyncio.timeout(timeout):
            while True:
                envelope = await self.received.get()
                if envelope.routing_key == routing_key:
                    return envelope


@pytest.fixture
async def peers(settings: OrdersSettings, broker: Any) -> AsyncIterator[dict[str, Peer]]:
    """basket, payments and shipping as event peers of the orders app (their queues purged)."""
    result = {name: Peer(broker, settings.bus_namespace, name) for name in ("basket", "payments", "shipping")}
    for peer in result.values():
        await peer.start()
    try:
        yield result
    finally:
        for peer in result.values():
            await peer.stop()
