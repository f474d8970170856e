"""Fixtures of the orders tests: an in-process orders app on its own schema and bus namespace,
with in-test stand-ins for the other services (request/reply responders and event peers).

The orders app here runs beside the session's real stack (started by cross-service tests), so
it gets its own schema (`orders_it`) and bus namespace (`<run>o`): the stack's orders relay
must never publish this app's outbox rows, and the stack's basket must never answer its
requests. Both are dropped with the run's database / at the end of the session.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aio_pika
import asyncpg
import pytest

from orders.__main__ import MIGRATIONS
from orders.app import create_app
from orders.settings import OrdersSettings
from services.orders.tests.testkit import FakeShipping, Payments, Peer, Store
from shared import db
from shared.bus import Responder, RpcServer, Topology
from shared.contracts import GetBasketSnapshot, QuoteShipping, ResolvePayment
from tests.support import delete_bus_namespace

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
        RpcServer(Topology(settings.bus_namespace, "basket"), [Responder(GetBasketSnapshot, store.snapshot)]),
        RpcServer(Topology(settings.bus_namespace, "shipping"), [Responder(QuoteShipping, shipping.quote)]),
        RpcServer(Topology(settings.bus_namespace, "payments"), [Responder(ResolvePayment, payments.resolve)]),
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
