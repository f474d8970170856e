"""Over the real bus: `shipping.quote` request/reply, `order.placed` -> one shipment, dispatch once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from shared.bus import EventConsumer, Subscription, Topology
from shared.contracts import Address, LineQuantity, OrderPlaced, QuoteShipping, envelope_for
from shared.http import new_id
from shipping import consumers
from shipping.seed import EU, METHODS, PRICES, UK, load_demo
from tests.support import identity_headers


def admin() -> dict[str, str]:
    return identity_headers()


async def post(client, path: str, body: dict) -> dict:
    response = await client.post(f"/api/v1{path}", json=body, headers=admin())
    assert response.status in (200, 201), await response.text()
    return (await response.json())["data"]


# User-assigned ISO 3166 codes, three for each table: no other test puts them in a zone.
_COUNTRIES = iter([f"{a}{b}" for a in "QX" for b in "MNOPQRSTUVWXYZ"])


@pytest.fixture
async def table(client):
    """A small table of its own: countries a and a2 in zone A (with an isles region), b in zone B."""
    a, a2, b = next(_COUNTRIES), next(_COUNTRIES), next(_COUNTRIES)
    zone_a = await post(
        client,
        "/shipping/zones",
        {"name": f"A {new_id()}", "countries": [a, a2], "regions": [{"name": "Isles", "prefixes": ["HS", "ZE"]}]},
    )
    zone_b = await post(client, "/shipping/zones", {"name": f"B {new_id()}", "countries": [b]})
    standard = await post(
        client, "/shipping/methods", {"type": "standard", "name": "Standard", "description": "3 days"}
    )
    courier = await post(client, "/shipping/methods", {"type": "regional", "name": "Courier"})
    isles = zone_a["regions"]["data"][0]["id"]

    async def price(method, zone, rate, **extra):
        return (await post(client, "/shipping/prices", {"method_id": method, "zone_id": zone, "rate": rate, **extra}))[
            "id"
        ]

    return {
        "a_std": await price(standard["id"], zone_a["id"], 500),
        "a_free": await price(standard["id"], zone_a["id"], 0, min_basket=10_000),
        "a_courier": await price(courier["id"], zone_a["id"], 900, max_weight=5000),
        "a_isles": await price(courier["id"], zone_a["id"], 1900, region_id=isles),
        "b_std": await price(standard["id"], zone_b["id"], 1200),
        "zone_a": zone_a,
        "a": a,
        "a2": a2,
        "b": b,
        "standard": standard,
    }


async def ask(rpc, **fields) -> list[tuple[str, int, int]]:
    order = {"order_id": new_id(), "zip": None, "sub_total": 5000, "weight_grams": 1000, "currency": "GBP"}
    reply = await rpc.call(QuoteShipping(**(order | fields)))
    return [(p.id, p.rate, p.tax) for p in reply.prices]


async def test_quote_over_the_bus(rpc, table):
    t = table
    assert await ask(rpc, country=t["a"], zip="AB1 2CD") == [(t["a_std"], 500, 100), (t["a_courier"], 900, 180)]
    assert await ask(rpc, country=t["a2"].lower(), sub_total=10_000) == [
        (t["a_free"], 0, 0),
        (t["a_courier"], 900, 180),
    ]
    assert await ask(rpc, country=t["a"], zip="hs1 2ab") == [(t["a_std"], 500, 100), (t["a_isles"], 1900, 380)]
    assert await ask(rpc, country=t["a"], weight_grams=6000) == [(t["a_std"], 500, 100)]
    assert await ask(rpc, country=t["b"]) == [(t["b_std"], 1200, 240)]
    assert await ask(rpc, country="YY") == []
    assert await ask(rpc, country="X\u0000") == []
    assert await ask(rpc, country=t["a"], currency="EUR") == []


async def test_quote_the_full_view(rpc, table):
    reply = await rpc.call(
        QuoteShipping(order_id=new_id(), country=table["b"], sub_total=1, weight_grams=0, currency="GBP")
    )
    [price] = reply.prices
    assert price.model_dump() == {
        "id": table["b_std"],
        "rate": 1200,
        "tax": 240,
        "fixed": True,
        "min_basket": 0,
        "min_weight": 0,
        "weight_unit": "g",
        "currency": "GBP",
        "method": {
            "id": table["standard"]["id"],
            "type": "standard",
            "name": "Standard",
            "description": "3 days",
            "code": None,
        },
        "zone": {"id": price.zone.id, "name": price.zone.name},
    }


async def test_quote_one_price_over_the_bus(rpc, table):
    t = table
    assert await ask(rpc, country=t["a"], price_id=t["a_std"]) == [(t["a_std"], 500, 100)]
    assert await ask(rpc, country=t["a"], price_id=t["a_free"]) == []  # under its threshold
    assert await ask(rpc, country=t["a"], sub_total=10_000, price_id=t["a_free"]) == [(t["a_free"], 0, 0)]
    assert await ask(rpc, country=t["a"], price_id=t["b_std"]) == []  # a price from another zone
    assert await ask(rpc, country=t["a"], price_id=new_id()) == []  # unknown
    assert await ask(rpc, country=t["a"], zip="ZE1 0AA", price_id=t["a_courier"]) == []  # the isles have their own


async def test_an_order_is_quoted_only_the_prices_in_its_currency(client, rpc, table):
    """Prices in three currencies for the same method and zone, made over HTTP: each order is
    offered its own currency's, never another's however cheap."""
    t, zone = table, table["zone_a"]["id"]
    eur = await post(
        client, "/shipping/prices", {"method_id": t["standard"]["id"], "zone_id": zone, "rate": 575, "currency": "EUR"}
    )
    eur_free = await post(
        client,
        "/shipping/prices",
        {"method_id": t["standard"]["id"], "zone_id": zone, "rate": 0, "currency": "eur", "min_basket": 11_500},
    )
    usd = await post(
        client, "/shipping/prices", {"method_id": t["standard"]["id"], "zone_id": zone, "rate": 1, "currency": "USD"}
    )
    assert (eur["currency"], eur_free["currency"], usd["currency"]) == ("EUR", "EUR", "USD")

    reply = await rpc.call(
        QuoteShipping(order_id=new_id(), country=t["a"], sub_total=5000, weight_grams=1000, currency="EUR")
    )
    assert [(p.id, p.rate, p.tax, p.currency) for p in reply.prices] == [(eur["id"], 575, 115, "EUR")]
    assert await ask(rpc, country=t["a"], currency="EUR", sub_total=11_500) == [(eur_free["id"], 0, 0)]
    assert await ask(rpc, country=t["a"], currency="USD") == [(usd["id"], 1, 0)]
    # the pounds' prices are unchanged, and a price of another currency is not the order's
    assert await ask(rpc, country=t["a"]) == [(t["a_std"], 500, 100), (t["a_courier"], 900, 180)]
    assert await ask(rpc, country=t["a"], currency="EUR", price_id=t["a_std"]) == []
    assert await ask(rpc, country=t["a"], price_id=eur["id"]) == []
    assert await ask(rpc, country=t["b"], currency="EUR") == []  # zone B has no euro prices


async def test_the_demo_table_quotes_a_euro_order_to_the_uk_and_the_eu(pool, rpc):
    async with pool.acquire() as conn:
        await load_demo(conn)
    for country, demo in (("GB", {0, 575, 795, 1150}), ("FR", {1495})):
        reply = await rpc.call(
            QuoteShipping(
                order_id=new_id(), country=country, zip="SW1A 1AA", sub_total=5000, weight_grams=1000, currency="EUR"
            )
        )
        # Only euro prices; the demo's among them (other tests may add prices to these zones).
        assert reply.prices and {p.currency for p in reply.prices} == {"EUR"}
        assert demo <= {p.rate for p in reply.prices}


def placed(order_id: str | None = None) -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id or new_id(),
        attempt_id=uuid.uuid4(),
        basket_id=new_id(),
        reference="2026-11-0001",
        status="payment-received",
        order_total=1234,
        currency="GBP",
        lines=[LineQuantity(variant_id=new_id(), sku="SKU-1", quantity=2)],
        shipping_address=Address(firstname="Ada", lastname="Lovelace", zip="SW1A 1AA", country="GB"),
        shipping_method="Standard Delivery",
        shipping_price_id=new_id(),
        placed_at=datetime.now(UTC),
    )


async def announcements(pool, observer, order_id: str) -> int:
    """`shipment.opened` rows for an order still in the outbox plus those already published.

    No relay runs in these tests, but the session's stack (when another test started it) runs
    one on this schema: what left the outbox went to the broker, where the observer counts it.
    """
    loop = asyncio.get_running_loop()
    published, deadline = 0, loop.time() + 2.0
    while True:
        while (message := await observer.queue.get(no_ack=True, fail=False)) is not None:
            published += orjson.loads(message.body)["payload"]["order_id"] == order_id
        queued = await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE routing_key = 'shipment.opened.v1' "
            "AND convert_from(body, 'UTF8')::jsonb -> 'payload' ->> 'order_id' = $1",
            order_id,
        )
        # Settled: nothing on its way (no relay), or all of it relayed and received.
        if (queued and loop.time() > deadline - 1.5) or (not queued and published) or loop.time() > deadline:
            return queued + published
        await asyncio.sleep(0.05)


ON_PLACED = Subscription(OrderPlaced, consumers.on_order_placed)


async def test_order_placed_twice_opens_one_shipment(pool, settings, observe):
    observer = await observe("shipment.opened.v1")
    consumer = EventConsumer(pool, Topology.from_settings(settings), [ON_PLACED])
    subscription = ON_PLACED
    msg = placed()
    envelope = envelope_for(msg, "orders")
    assert await consumer.handle(envelope, subscription, msg) is True
    assert await consumer.handle(envelope, subscription, msg) is False  # the same event again
    assert await consumer.handle(envelope_for(msg, "orders"), subscription, msg) is True  # announced twice
    rows = await pool.fetch(
        "SELECT status, reference, shipping_method, address FROM shipments WHERE order_id = $1", msg.order_id
    )
    assert [(r["status"], r["reference"], r["shipping_method"]) for r in rows] == [
        ("open", "2026-11-0001", "Standard Delivery")
    ]
    assert rows[0]["address"]["zip"] == "SW1A 1AA"
    assert await announcements(pool, observer, msg.order_id) == 1


async def test_concurrent_copies_of_order_placed_open_one_shipment(pool, settings, observe):
    """Twenty copies at once, each with its own event id (orders announced the placement again):
    the inbox lets every one through, and the unique key on the order leaves one shipment, opened
    and announced by one copy."""
    observer = await observe("shipment.opened.v1")
    consumer = EventConsumer(pool, Topology.from_settings(settings), [ON_PLACED])
    msg = placed()
    handled = await asyncio.gather(*(consumer.handle(envelope_for(msg, "orders"), ON_PLACED, msg) for _ in range(20)))
    assert handled == [True] * 20
    assert await pool.fetchval("SELECT count(*) FROM shipments WHERE order_id = $1", msg.order_id) == 1
    assert await announcements(pool, observer, msg.order_id) == 1


async def test_the_same_order_placed_delivered_concurrently_is_handled_once(pool, settings, observe):
    """Twenty deliveries of one event at once: the inbox row lets one through, the others wait
    on its key and then find it."""
    observer = await observe("shipment.opened.v1")
    consumer = EventConsumer(pool, Topology.from_settings(settings), [ON_PLACED])
    msg = placed()
    envelope = envelope_for(msg, "orders")
    handled = await asyncio.gather(*(consumer.handle(envelope, ON_PLACED, msg) for _ in range(20)))
    assert sorted(handled) == [False] * 19 + [True]
    assert await pool.fetchval("SELECT count(*) FROM shipments WHERE order_id = $1", msg.order_id) == 1
    assert await announcements(pool, observer, msg.order_id) == 1


async def publish(settings, *envelopes) -> None:
    import aio_pika

    connection = await aio_pika.connect_robust(settings.amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(Topology.from_settings(settings).events_exchange)
        for env in envelopes:
            await exchange.publish(
                aio_pika.Message(env.model_dump_json().encode(), message_id=str(env.event_id)),
                routing_key=env.routing_key,
            )
    finally:
        await connection.close()


async def dispatch(client, shipment_id: str, body: dict | None = None):
    response = await client.post(f"/api/v1/shipments/{shipment_id}/dispatch", json=body or {}, headers=admin())
    return response.status, await response.json()


async def test_placed_delivered_twice_then_dispatched_exactly_once(client, settings, pool, observe):
    observer = await observe("shipment.#")
    msg = placed()
    envelope = envelope_for(msg, "orders")
    await publish(settings, envelope, envelope)
    [opened] = await observer.collect(lambda e: e["payload"]["order_id"] == msg.order_id, 1)
    assert opened["type"] == "shipment.opened"
    shipment_id = opened["payload"]["shipment_id"]
    response = await client.get(f"/api/v1/shipments?order_id={msg.order_id}", headers=admin())
    listing = await response.json()
    assert [s["id"] for s in listing["data"]] == [shipment_id]
    assert listing["meta"]["total"] == 1

    status, body = await dispatch(client, shipment_id, {"tracking_no": " TRK123 "})
    assert status == 200, body
    assert (body["data"]["status"], body["data"]["tracking_no"]) == ("dispatched", "TRK123")
    assert body["data"]["dispatched_at"] is not None
    assert await dispatch(client, shipment_id, {"tracking_no": "OTHER"}) == (
        409,
        {"error": {"http_code": 409, "message": "This shipment has already been dispatched"}},
    )
    # A later, unrelated dispatch is the marker: by the time it is seen, a second event for the
    # first shipment would have been published before it.
    marker = placed()
    await publish(settings, envelope_for(marker, "orders"))
    [marker_opened] = await observer.collect(lambda e: e["payload"]["order_id"] == marker.order_id, 1)
    await dispatch(client, marker_opened["payload"]["shipment_id"])
    events = await observer.collect(
        lambda e: e["type"] == "shipment.dispatched" and e["payload"]["order_id"] in (msg.order_id, marker.order_id),
        2,
    )
    assert [e["payload"]["order_id"] for e in events] == [msg.order_id, marker.order_id]
    assert events[0]["payload"]["tracking_no"] == "TRK123"
    assert events[0]["payload"]["shipment_id"] == shipment_id
    row = await pool.fetchrow("SELECT status, tracking_no, version FROM shipments WHERE id = $1", shipment_id)
    assert (row["status"], row["tracking_no"], row["version"]) == ("dispatched", "TRK123", 2)


async def test_concurrent_dispatches_one_wins(client, pool, settings):
    consumer = EventConsumer(pool, Topology.from_settings(settings), [ON_PLACED])
    msg = placed()
    await consumer.handle(envelope_for(msg, "orders"), ON_PLACED, msg)
    shipment_id = await pool.fetchval("SELECT id FROM shipments WHERE order_id = $1", msg.order_id)
    results = await asyncio.gather(*(dispatch(client, shipment_id, {"tracking_no": f"T{i}"}) for i in range(6)))
    assert sorted(status for status, _ in results) == [200, 409, 409, 409, 409, 409]
    winner = next(body for status, body in results if status == 200)
    row = await pool.fetchrow("SELECT tracking_no, version FROM shipments WHERE id = $1", shipment_id)
    assert (row["tracking_no"], row["version"]) == (winner["data"]["tracking_no"], 2)


async def test_dispatch_unknown_and_bad_input(client):
    assert (await dispatch(client, new_id()))[0] == 404
    assert (await dispatch(client, "NOT-AN-ID"))[0] == 404
    response = await client.post(f"/api/v1/shipments/{new_id()}/dispatch", json={"tracking_no": 5}, headers=admin())
    assert response.status == 422
    response = await client.get("/api/v1/shipments?status=lost", headers=admin())
    assert (response.status, set(await response.json())) == (422, {"status"})


async def test_demo_seed_is_idempotent(pool):
    # The stack may have loaded it already (tests/support.py seeds every service): either way,
    # after two more loads the demo table exists exactly once.
    async with pool.acquire() as conn:
        await load_demo(conn)
        assert await load_demo(conn) == []
    zones = await pool.fetch("SELECT id, name FROM zones WHERE name = ANY($1::text[])", [UK, EU])
    assert sorted(z["name"] for z in zones) == [EU, UK]
    codes = await pool.fetch("SELECT code FROM methods WHERE code = ANY($1::text[])", list(METHODS))
    assert sorted(r["code"] for r in codes) == sorted(METHODS)
    for zone in zones:
        rates = await pool.fetch(
            "SELECT m.code, p.currency, p.rate FROM prices p JOIN methods m ON m.id = p.method_id "
            "WHERE p.zone_id = $1 AND m.code = ANY($2::text[])",
            zone["id"],
            list(METHODS),
        )
        # Every demo price of the zone, in all three currencies, once.
        assert sorted(tuple(r) for r in rates) == sorted(
            (p.code, p.currency, p.rate) for p in PRICES if p.zone == zone["name"]
        )
    assert {p.currency for p in PRICES} == {"GBP", "EUR", "USD"}


async def test_admin_routes_through_the_gateway(stack):
    import aiohttp

    from gateway.auth import mint_token
    from gateway.settings import GatewaySettings

    token = mint_token(GatewaySettings())
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{stack.gateway}/shipping/zones") as response:
            assert response.status == 401
        async with session.get(f"{stack.gateway}/shipments", headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 200
            assert set(await response.json()) == {"data", "meta", "links"}
