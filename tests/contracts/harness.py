"""Each service as its app really wires it, with only the resources its handlers need.

`running(...)` builds the app with the service's own `create_app` while recording what it hands to
`runtime.create_service_app` (its subscriptions, responders and resources), then starts the
database pool and the service's own resources (payments' side pool and providers, orders' caches)
on the run's database. Nothing is consumed from the broker: the tests call `EventConsumer.handle`
and the responders directly.

Every message is handled inside one outer transaction of one connection that is rolled back at the
end (each message in its own savepoint): the handlers' writes and the events they emit are seen
by the test and by nobody else, so the service tests and the session's stack, which share these
schemas, never meet a shipment or an outbox row for an order that does not exist.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from hypothesis import strategies as st

from basket import pricing_queries as basket_pricing_queries
from basket import queries as basket_queries
from basket.app import create_app as basket_app
from basket.seed import CATALOGUE, DEFAULTS
from basket.settings import BasketSettings
from customers import queries as customers_queries
from customers.app import create_app as customers_app
from customers.settings import CustomersSettings
from orders.app import create_app as orders_app
from orders.settings import OrdersSettings
from payments.app import create_app as payments_app
from payments.providers import CONSUMED_NONCE, DECLINED_NONCE, VALID_NONCE
from payments.seed import seed_types
from payments.settings import PaymentsSettings
from shared import runtime
from shared.bus import RequestHandler, Responder, Subscription
from shared.http import new_id
from shared.settings import ServiceSettings
from shipping import queries as shipping_queries
from shipping.app import create_app as shipping_app
from shipping.seed import load_demo
from shipping.settings import ShippingSettings
from tests.contracts.messages import IDS, TEXT, Overrides


@dataclass
class Seeded:
    """What a service's data gives the tests: strategies that name it, and probes that must do real work.

    A probe is (key, payload, expected): for an event key, the exact set of routing keys the handler
    emits; for a request type, a predicate on the reply. Probes prove that the messages reach the
    handlers' real paths (a reservation, a capture, a non-empty quote), not only the no-op ones.
    """

    overrides: Overrides = field(default_factory=dict)
    probes: list[tuple[str, dict[str, Any], Any]] = field(default_factory=list)


async def no_data(conn: asyncpg.Connection) -> Seeded:
    return Seeded()


async def basket_data(conn: asyncpg.Connection) -> Seeded:
    """The demo catalogue (skus tagged: the session's stack may have loaded the real one) and baskets."""
    tag = new_id()[:8]
    variant_ids: list[str] = []
    for name, variants in CATALOGUE:
        product = await basket_queries.insert_product(conn, new_id(), name)
        for position, fields in enumerate(variants):
            values = DEFAULTS | fields | {"id": new_id(), "product_id": product["id"], "position": position}
            values["sku"] = f"{values['sku']}-{tag}"
            variant_ids.append((await basket_queries.insert_variant(conn, values))["id"])
    if await basket_pricing_queries.currency_by_code(conn, "EUR") is None:  # the session's stack may have seeded it
        euro = {"name": "Euro", "exchange_rate": Decimal("1.165"), "format": "€{price}", "decimal_point": ".",
                "thousand_point": ",", "enabled": True, "is_default": False}  # fmt: skip
        await basket_pricing_queries.insert_currency(conn, new_id(), "EUR", euro)
    basket_ids = []
    for currency, count in (("GBP", 3), ("GBP", 0), ("EUR", 1)):
        basket_id = (await basket_queries.insert_basket(conn, new_id(), currency, {}))["id"]
        for variant_id in variant_ids[:count]:
            await basket_queries.upsert_line(conn, new_id(), basket_id, variant_id, 2, {})
        basket_ids.append(basket_id)
    lines = [{"variant_id": variant_id, "quantity": 1} for variant_id in variant_ids[:3]]
    order = {"order_id": new_id(), "attempt_id": str(uuid.uuid4()), "basket_id": basket_ids[0]}
    placed = order | {
        "reference": "2024-05-0001",
        "status": "payment-received",
        "order_total": 4500,
        "currency": "GBP",
        "lines": lines,
        "placed_at": "2024-05-14T10:00:00Z",
    }
    return Seeded(
        {
            "variant_id": st.one_of(st.sampled_from(variant_ids), IDS),
            "basket_id": st.one_of(st.sampled_from(basket_ids), IDS),
        },
        [
            ("order.stock_requested.v1", order | {"lines": lines}, {"stock.reserved.v1"}),
            ("order.placed.v1", placed, {"stock.committed.v1"}),
            ("basket.snapshot", {"basket_id": basket_ids[0]}, lambda reply: len(reply.basket.lines) == 3),
            ("basket.snapshot", {"basket_id": basket_ids[2]}, lambda reply: reply.basket.currency == "EUR"),
        ],
    )


async def customers_data(conn: asyncpg.Connection) -> Seeded:
    """Two customers, the first with an address in their book."""
    customer_ids = []
    for name in ("ada", "bob"):
        customer = {"id": new_id(), "email": f"{name}-{new_id()}@example.com", "firstname": name, "lastname": "Test"}
        blanks = dict.fromkeys(("company_name", "vat_no", "contact_number", "alt_contact_number"))
        values = customer | blanks | {"password_hash": "not-a-hash"}  # never signs in
        customer_ids.append((await customers_queries.insert_customer(conn, values))["id"])
    address = {
        "id": new_id(),
        "customer_id": customer_ids[0],
        "firstname": "Ada",
        "lastname": "Lovelace",
        "address": "12 St James's Square",
        "city": "London",
        "state": "Greater London",
        "postal_code": "SW1Y 4JH",
        "country": "GB",
    }
    address_id = (await customers_queries.insert_address(conn, address))["id"]
    return Seeded(
        {
            "customer_id": st.one_of(st.sampled_from(customer_ids), IDS),
            "address_id": st.one_of(st.just(address_id), IDS),
        },
        [
            (
                "customer.address",
                {"customer_id": customer_ids[0], "address_id": address_id},
                lambda reply: reply.address is not None and reply.address.zip == "SW1Y 4JH",
            ),
            # Another customer's address is unknown to them.
            (
                "customer.address",
                {"customer_id": customer_ids[1], "address_id": address_id},
                lambda reply: reply.address is None,
            ),
        ],
    )


async def shipping_data(conn: asyncpg.Connection) -> Seeded:
    """The demo shipping table (UK and Europe zones), unless the session's stack loaded it already."""
    await load_demo(conn)
    price_ids = [row["id"] for row in await shipping_queries.price_details(conn)]
    quote = {"order_id": new_id(), "country": "GB", "zip": "SW1A 1AA", "sub_total": 5000, "weight_grams": 900}
    return Seeded(
        {"price_id": st.one_of(st.sampled_from(price_ids), IDS)},
        [("shipping.quote", quote | {"currency": "GBP"}, lambda reply: len(reply.prices) > 0)],
    )


async def payments_data(conn: asyncpg.Connection) -> Seeded:
    """The demo's payment types (offline enabled, as the stack has them), by id and by handle, and
    the sandbox's well-known tokens."""
    await seed_types(conn)
    rows = await conn.fetch("SELECT id, handle FROM payment_types ORDER BY handle")
    keys = [row["id"] for row in rows] + [row["handle"] for row in rows]
    card = next(row["id"] for row in rows if row["handle"] == "card")

    def charge(token: str) -> dict[str, Any]:
        return {
            "order_id": new_id(),
            "attempt_id": str(uuid.uuid4()),
            "amount": 2599,
            "currency": "GBP",
            "payment_type_id": card,
            "payment_token": token,
        }

    return Seeded(
        {
            "payment_type_id": st.one_of(st.sampled_from(keys), IDS),
            "payment_type": st.one_of(st.sampled_from(keys), TEXT),
            "payment_token": st.one_of(st.sampled_from([VALID_NONCE, DECLINED_NONCE, CONSUMED_NONCE]), TEXT),
        },
        [
            ("order.charge_requested.v1", charge(VALID_NONCE), {"payment.captured.v1"}),
            ("order.charge_requested.v1", charge(DECLINED_NONCE), {"payment.declined.v1"}),
            (
                "payment.resolve",
                {"payment_type": "card", "payment_token": VALID_NONCE},
                lambda reply: reply.payment_type is not None and reply.errors == {},
            ),
        ],
    )


@dataclass(frozen=True)
class Service:
    name: str
    settings: type[ServiceSettings]
    create_app: Callable[[Any], web.Application]
    # Data the messages may name, created in the outer (rolled back) transaction.
    data: Callable[[asyncpg.Connection], Awaitable[Seeded]] = no_data
    settings_overrides: tuple[tuple[str, Any], ...] = ()


SERVICES = {
    "basket": Service("basket", BasketSettings, basket_app, data=basket_data),
    "orders": Service("orders", OrdersSettings, orders_app),
    "customers": Service("customers", CustomersSettings, customers_app, data=customers_data),
    "shipping": Service("shipping", ShippingSettings, shipping_app, data=shipping_data),
    "payments": Service(
        "payments", PaymentsSettings, payments_app, data=payments_data, settings_overrides=(("side_pool_max", 2),)
    ),
}


@dataclass
class Running:
    service: Service
    settings: ServiceSettings
    app: web.Application
    # What the app hands its event consumer, by routing key.
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    responder_factory: runtime.Wiring[Responder] | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        return self.app[runtime.POOL]

    def responder_types(self) -> set[str]:
        if self.responder_factory is None:
            return set()
        return {responder.model.type for responder in self.responder_factory(self.app)}

    @contextlib.asynccontextmanager
    async def outer_transaction(self, isolation: str | None = None) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            transaction = conn.transaction(isolation=isolation)
            await transaction.start()
            try:
                yield conn
            finally:
                await transaction.rollback()

    @contextlib.asynccontextmanager
    async def responders(self, conn: asyncpg.Connection) -> AsyncIterator[dict[str, RequestHandler]]:
        """The app's responders by request type, reading through `conn` (the outer transaction)
        instead of the pool."""
        assert self.responder_factory is not None, f"{self.service.name} registers no responder"
        real = self.app[runtime.POOL]
        self.app[runtime.POOL] = OneConnection(conn)  # type: ignore[assignment]
        try:
            yield {responder.model.type: responder.handler for responder in self.responder_factory(self.app)}
        finally:
            self.app[runtime.POOL] = real


class OneConnection:
    """Stands in for a pool: every `acquire` lends the one connection of the test's transaction,
    and the pool's own query methods (`pool.fetchrow(...)`) run on it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        yield self.conn


@contextlib.asynccontextmanager
async def running(name: str, infra: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    service = SERVICES[name]
    settings = infra.settings(service.settings, db_pool_min=1, db_pool_max=2, **dict(service.settings_overrides))
    wiring: dict[str, Any] = {}
    real_factory = runtime.create_service_app

    def recording_factory(settings: ServiceSettings, **kwargs: Any) -> web.Application:
        wiring.update(kwargs)
        return real_factory(settings, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(runtime, "create_service_app", recording_factory)
        app = service.create_app(settings)
    async with contextlib.AsyncExitStack() as stack:
        for resource in (runtime.database(settings), *wiring.get("resources", ())):
            await stack.enter_async_context(contextlib.asynccontextmanager(resource)(app))
        subscriptions = wiring.get("subscriptions")
        by_key = {sub.model.routing_key(): sub for sub in subscriptions(app)} if subscriptions is not None else {}
        yield Running(service, settings, app, by_key, wiring.get("responders"))
