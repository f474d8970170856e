"""Orders over HTTP (issue 4, orders side of issue 5): the in-process orders app with in-test
basket and shipping responders on the bus."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg
import pytest

from orders.settings import OrdersSettings
from services.orders.tests.testkit import ADDRESS, FakeShipping, Store, admin, line
from shared.http import new_id
from tests.support import identity_headers

# shared/http.py stores the request id under a str key (aiohttp 3.14 warns; the foundation owns it).
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

URL = "/api/v1/orders"


async def create(client: Any, basket_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(URL, json={"basket_id": basket_id, **body})
    assert response.status == 200, await response.text()
    return (await response.json())["data"]


async def get(client: Any, order_id: str, include: str = "") -> dict[str, Any]:
    response = await client.get(f"{URL}/{order_id}", params={"include": include} if include else None)
    assert response.status == 200, await response.text()
    return (await response.json())["data"]


async def put(client: Any, path: str, body: Any, status: int = 200) -> Any:
    response = await client.put(f"{URL}/{path}", json=body)
    assert response.status == status, await response.text()
    return await response.json()


async def test_create_snapshots_the_basket(client: Any, store: Store) -> None:
    basket_id = store.put([line("TSHIRT-M", 2, 1250), line("BOOK", 1, 999, tax_bp=0, option="Hardback")])
    order = await create(client, basket_id)
    assert order["status"] == "awaiting-payment"
    assert re.fullmatch(r"#ORD-\d{4,}", order["display_id"])
    assert re.fullmatch(r"[a-z0-9]{24}", order["id"])
    basket = store.baskets[basket_id]
    assert (order["sub_total"], order["tax_total"], order["delivery_total"]) == (3499, 500, 0)
    assert (basket.sub_total, basket.tax_total) == (3499, 500)
    assert order["order_total"] == order["sub_total"] + order["tax_total"] == 3999
    assert order["currency"] == "GBP"
    assert order["reference"] is None and order["placed_at"] is None
    assert "lines" not in order

    full = await get(client, order["id"], "lines.variant,shipping,basket,transactions")
    lines = full["lines"]["data"]
    assert [
        (li["sku"], li["quantity"], li["unit_price"], li["line_total"], li["tax_total"], li["tax_rate"]) for li in lines
    ] == [
        ("TSHIRT-M", 2, 1250, 2500, 500, 20),
        ("BOOK", 1, 999, 999, 0, 0),
    ]
    assert lines[1]["option"] == "Hardback"
    assert lines[0]["is_shipping"] is False and lines[0]["is_manual"] is False
    assert lines[0]["variant"]["data"]["id"] == basket.lines[0].variant_id
    assert lines[0]["variant"]["data"]["weight"] == {"value": 1, "unit": "kg"}
    assert full["shipping"] == {"data": None}
    assert full["transactions"] == {"data": []}
    assert full["basket"]["data"] == {
        "id": basket_id,
        "sub_total": 34.99,
        "tax_total": 5,
        "discount_total": 0,
        "total": 39.99,
        "currency": "GBP",
    }
    # every address/contact field is present (null) as upstream, so frontends can read them
    assert full["shipping_details"]["firstname"] is None
    assert full["contact_details"] == {"email": None, "phone": None}


async def test_resync_returns_the_same_order_with_the_basket_now(client: Any, store: Store) -> None:
    basket_id = store.put([line("A", 1, 1000)])
    first = await create(client, basket_id)
    store.put([line("A", 3, 1000), line("B", 1, 500)], basket_id=basket_id)
    second = await create(client, basket_id)
    assert second["id"] == first["id"]
    assert second["display_id"] == first["display_id"]
    assert (second["sub_total"], second["tax_total"], second["order_total"]) == (3500, 700, 4200)
    lines = (await get(client, first["id"], "lines"))["lines"]["data"]
    assert [(li["sku"], li["quantity"]) for li in lines] == [("A", 3), ("B", 1)]


async def test_concurrent_creates_make_one_order(client: Any, store: Store, pool: asyncpg.Pool) -> None:
    basket_id = store.put([line("A", 1, 1000)])
    responses = await asyncio.gather(*(client.post(URL, json={"basket_id": basket_id}) for _ in range(20)))
    assert [r.status for r in responses] == [200] * 20
    ids = {(await r.json())["data"]["id"] for r in responses}
    assert len(ids) == 1
    assert await pool.fetchval("SELECT count(*) FROM orders WHERE basket_id = $1", basket_id) == 1
    assert await pool.fetchval("SELECT count(*) FROM order_lines WHERE order_id = $1", ids.pop()) == 1


async def test_no_second_order_while_the_first_is_being_placed(client: Any, store: Store, pool: asyncpg.Pool) -> None:
    """A create racing the placement of the basket's order (placed, not yet committed; basket has
    not heard of it, so its snapshot is not `used`): the unique index makes the create wait for the
    placement, then it finds the order placed. No second order."""
    basket_id = store.put([line("A", 1, 1000)])
    order = await create(client, basket_id)
    async with pool.acquire() as placing:
        async with placing.transaction():
            await placing.execute(
                "UPDATE orders SET status = 'payment-received', placed_at = now(), reference = 'REF-1' WHERE id = $1",
                order["id"],
            )
            second = asyncio.create_task(client.post(URL, json={"basket_id": basket_id}))
            await asyncio.sleep(0.3)  # the create is waiting on the placing row's index entry
            assert not second.done()
        response = await second
    assert response.status == 403
    assert (await response.json())["error"]["message"] == "This basket already has an order that has been placed"
    assert await pool.fetchval("SELECT count(*) FROM orders WHERE basket_id = $1", basket_id) == 1


async def test_concurrent_edits_of_one_order_lose_nothing(client: Any, store: Store, shipping: FakeShipping) -> None:
    """Addresses, contact and the shipping price set at once: each edit locks the order and
    changes its own field, the price is re-checked against the address it was found for."""
    order = await create(client, store.put([line("A", 2, 1000)]))
    order_id = order["id"]
    await put(client, f"{order_id}/shipping/address", ADDRESS)
    moved = ADDRESS | {"zip": "SW1A 1AA", "city": "London"}
    edits = [
        ("shipping/address", moved),
        ("billing/address", ADDRESS | {"firstname": "Billy"}),
        ("contact", {"email": "sweets@example.com", "phone": "0123"}),
        ("shipping/cost", {"price_id": shipping.uk_express.id, "preference": "afternoon"}),
    ] * 3
    responses = await asyncio.gather(*(client.put(f"{URL}/{order_id}/{path}", json=body) for path, body in edits))
    assert [r.status for r in responses] == [200] * len(edits)
    after = await get(client, order_id, "lines")
    assert (after["shipping_details"]["zip"], after["shipping_details"]["city"]) == ("SW1A 1AA", "London")
    assert after["billing_details"]["firstname"] == "Billy"
    assert after["contact_details"] == {"email": "sweets@example.com", "phone": "0123"}
    assert (after["shipping_method"], after["shipping_preference"]) == ("Express Delivery", "afternoon")
    assert after["delivery_total"] == 1000
    assert after["order_total"] == 2000 + 1000 + 400 + 200
    assert [li["sku"] for li in after["lines"]["data"]] == ["A", "EXP"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "basket_id", "Field required"),
        ({"basket_id": 12}, "basket_id", "Input should be a valid string"),
        ({"basket_id": "nosuchbasket00000000"}, "basket_id", "The selected basket id is invalid."),
        ({"basket_id": "Not An Id!"}, "basket_id", "The selected basket id is invalid."),
    ],
)
async def test_create_validation(client: Any, body: dict[str, Any], field: str, message: str) -> None:
    response = await client.post(URL, json=body)
    assert response.status == 422
    assert await response.json() == {field: [message]}


async def test_used_basket_is_refused(client: Any, store: Store) -> None:
    basket_id = store.put([line("A", 1, 1000)], used=True)
    response = await client.post(URL, json={"basket_id": basket_id})
    assert response.status == 403
    assert await response.json() == {
        "error": {"http_code": 403, "message": "This basket already has an order that has been placed"}
    }


async def test_basket_unavailable_is_503(app_factory: Any, settings: OrdersSettings) -> None:
    # No responders: the request is published but nobody answers before the deadline.
    client = await app_factory(settings.model_copy(update={"rpc_timeout": 0.5}))
    response = await client.post(URL, json={"basket_id": new_id()})
    assert response.status == 503
    assert await response.json() == {"error": {"http_code": 503, "message": "The basket service is unavailable"}}


async def test_unknown_and_malformed_ids_are_404(client: Any) -> None:
    for path in (f"{URL}/{new_id()}", f"{URL}/NOT-AN-ID", f"{URL}/{new_id()}/shipping/methods"):
        response = await client.get(path)
        assert response.status == 404, path
        assert await response.json() == {"error": {"http_code": 404, "message": "Resource not found"}}
    response = await client.put(f"{URL}/{new_id()}/contact", json={"email": "a@example.com"})
    assert response.status == 404


async def test_addresses_and_contact(client: Any, store: Store) -> None:
    order = await create(client, store.put([line("A", 1, 1000)]))
    shipped = (await put(client, f"{order['id']}/shipping/address", ADDRESS))["data"]
    assert shipped["shipping_details"] | {} == {
        **{k: None for k in shipped["shipping_details"]},
        **ADDRESS,
        "method": None,
        "preference": None,
    }
    billed = (
        await put(
            client, f"{order['id']}/billing/address", {**ADDRESS, "country": "fr", "county": None, "state": "Paris"}
        )
    )["data"]
    assert billed["billing_details"]["country"] == "France"
    assert billed["billing_details"]["state"] == "Paris"
    contact = (await put(client, f"{order['id']}/contact", {"email": "sweets@example.com", "phone": "123"}))["data"]
    assert contact["contact_details"] == {"email": "sweets@example.com", "phone": "123"}
    # long but realistic values pass (upstream's 20/40/8 limits were too tight)
    long_address = {**ADDRESS, "firstname": "F" * 100, "address": "A" * 100, "zip": "Z" * 20}
    again = (await put(client, f"{order['id']}/shipping/address", long_address))["data"]
    assert again["shipping_details"]["firstname"] == "F" * 100
    assert again["order_total"] == order["order_total"]


INVALID_ADDRESSES = [
    ({k: v for k, v in ADDRESS.items() if k != "firstname"}, {"firstname": ["Field required"]}),
    ({**ADDRESS, "firstname": "   "}, {"firstname": ["String should have at least 1 character"]}),
    ({**ADDRESS, "lastname": "L" * 101}, {"lastname": ["String should have at most 100 characters"]}),
    ({**ADDRESS, "zip": "Z" * 21}, {"zip": ["String should have at most 20 characters"]}),
    ({**ADDRESS, "country": "Narnia"}, {"country": ["The selected country is invalid."]}),
    ({**ADDRESS, "county": None}, {"county": ["The county field is required when state is not present."]}),
    ({**ADDRESS, "city": 42}, {"city": ["Input should be a valid string"]}),
    (
        {**ADDRESS, "email": "not-an-email"},
        {"email": ["value is not a valid email address: An email address must have an @-sign."]},
    ),
    (
        {k: v for k, v in ADDRESS.items() if k not in ("address", "zip")},
        {"address": ["Field required"], "zip": ["Field required"]},
    ),
    ([ADDRESS], {"body": ["The request body must be a JSON object"]}),
]


@pytest.mark.parametrize(("body", "errors"), INVALID_ADDRESSES)
async def test_invalid_address_changes_nothing(client: Any, store: Store, body: Any, errors: dict[str, Any]) -> None:
    order = await create(client, store.put([line("A", 1, 1000)]))
    await put(client, f"{order['id']}/billing/address", {**ADDRESS, "firstname": "Before"})
    before = await get(client, order["id"], "lines")
    for kind in ("shipping", "billing"):
        assert await put(client, f"{order['id']}/{kind}/address", body, status=422) == errors
    assert await get(client, order["id"], "lines") == before


NO_PERIOD = "The part after the @-sign is not valid. It should have a period."


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"email": ["Field required"]}),
        ({"email": "nope"}, {"email": ["value is not a valid email address: An email address must have an @-sign."]}),
        ({"email": "a@b"}, {"email": [f"value is not a valid email address: {NO_PERIOD}"]}),
        ({"email": "a@example.com", "phone": "1" * 41}, {"phone": ["String should have at most 40 characters"]}),
    ],
)
async def test_invalid_contact_changes_nothing(client: Any, store: Store, body: Any, errors: dict[str, Any]) -> None:
    order = await create(client, store.put([line("A", 1, 1000)]))
    await put(client, f"{order['id']}/contact", {"email": "first@example.com"})
    before = await get(client, order["id"])
    assert await put(client, f"{order['id']}/contact", body, status=422) == errors
    assert await get(client, order["id"]) == before


async def test_malformed_json_is_400(client: Any, store: Store) -> None:
    order = await create(client, store.put([line("A", 1, 1000)]))
    response = await client.put(f"{URL}/{order['id']}/contact", data=b"{not json")
    assert response.status == 400
    assert (await response.json())["error"]["http_code"] == 400


# ---------------------------------------------------------------------------------------------
# Shipping (orders side of issue 5)


async def test_shipping_methods_need_an_address(client: Any, store: Store) -> None:
    order = await create(client, store.put([line("A", 1, 1000)]))
    response = await client.get(f"{URL}/{order['id']}/shipping/methods")
    assert response.status == 422
    assert await response.json() == {"shipping_address": ["The order has no shipping address"]}


async def test_shipping_methods_in_the_upstream_shape(client: Any, store: Store, shipping: FakeShipping) -> None:
    order = await create(client, store.put([line("A", 2, 1000, weight_grams=750)]))
    await put(client, f"{order['id']}/shipping/address", ADDRESS)
    response = await client.get(f"{URL}/{order['id']}/shipping/methods")
    assert response.status == 200
    data = (await response.json())["data"]
    assert [(p["id"], p["rate"], p["tax"]) for p in data] == [
        (shipping.uk_standard.id, 500, 100),
        (shipping.uk_express.id, 1000, 200),
    ]
    assert data[0]["method"] == {
        "data": {
            "id": shipping.uk_standard.method.id,
            "type": "standard",
            "name": "Standard Delivery",
            "description": None,
            "code": "STD",
        }
    }
    assert data[0]["zone"] == {"data": {"id": shipping.uk_standard.zone.id, "name": "United Kingdom"}}
    assert (data[0]["fixed"], data[0]["min_basket"], data[0]["min_weight"], data[0]["weight_unit"]) == (
        True,
        0,
        "0.00000",
        "kg",
    )
    # Upstream's decimal columns: strings with five places, the dimensions it had beside weight too.
    assert {key: data[0][key] for key in ("min_height", "min_width", "min_depth", "min_volume")} == dict.fromkeys(
        ("min_height", "min_width", "min_depth", "min_volume"), "0.00000"
    )
    assert (data[0]["height_unit"], data[0]["width_unit"], data[0]["depth_unit"], data[0]["volume_unit"]) == (
        "cm",
        "cm",
        "cm",
        "l",
    )
    quote = shipping.requests[-1]
    assert (quote.order_id, quote.country, quote.zip, quote.sub_total, quote.weight_grams, quote.currency) == (
        order["id"],
        "GB",
        "CM2 5TH",
        2000,
        750,
        "GBP",
    )
    assert quote.price_id is None


async def test_choosing_shipping_sets_the_one_shipping_line(client: Any, store: Store, shipping: FakeShipping) -> None:
    order = await create(client, store.put([line("A", 1, 2599)]))
    await put(client, f"{order['id']}/shipping/address", ADDRESS)
    chosen = (await put(client, f"{order['id']}/shipping/cost", {"price_id": shipping.uk_standard.id}))["data"]
    assert (chosen["sub_total"], chosen["delivery_total"], chosen["tax_total"], chosen["order_total"]) == (
        2599,
        500,
        519 + 100,
        2599 + 500 + 619,
    )
    assert chosen["shipping_method"] == "Standard Delivery"
    other = (
        await put(
            client, f"{order['id']}/shipping/cost", {"price_id": shipping.uk_express.id, "preference": "Leave at door"}
        )
    )["data"]
    assert (other["delivery_total"], other["tax_total"], other["order_total"]) == (1000, 519 + 200, 2599 + 1000 + 719)
    assert (other["shipping_method"], other["shipping_preference"]) == ("Express Delivery", "Leave at door")
    assert other["shipping_details"]["method"] == "Express Delivery"
    full = await get(client, order["id"], "lines,shipping")
    ship = [li for li in full["lines"]["data"] if li["is_shipping"]]
    assert len(ship) == 1
    assert full["shipping"]["data"] == ship[0]
    assert (
        ship[0]["description"],
        ship[0]["option"],
        ship[0]["line_total"],
        ship[0]["tax_total"],
        ship[0]["tax_rate"],
    ) == (
        "Express Delivery",
        "United Kingdom",
        1000,
        200,
        20,
    )


@pytest.mark.parametrize("price", ["", None, "eu", "unknown", "Bad Id!"])
async def test_a_price_that_does_not_apply_changes_nothing(
    client: Any, store: Store, shipping: FakeShipping, price: str | None
) -> None:
    order = await create(client, store.put([line("A", 1, 2599)]))
    await put(client, f"{order['id']}/shipping/address", ADDRESS)
    await put(client, f"{order['id']}/shipping/cost", {"price_id": shipping.uk_standard.id})
    before = await get(client, order["id"], "lines")
    price_id = {"eu": shipping.eu_standard.id, "unknown": new_id()}.get(price or "", price)
    body = {} if price is None else {"price_id": price_id}
    assert await put(client, f"{order['id']}/shipping/cost", body, status=422) == {
        "price_id": ["Please choose a shipping option"]
    }
    assert await get(client, order["id"], "lines") == before


async def test_address_change_requotes_the_chosen_price(client: Any, store: Store, shipping: FakeShipping) -> None:
    order = await create(client, store.put([line("A", 1, 2599)]))
    await put(client, f"{order['id']}/shipping/address", ADDRESS)
    await put(client, f"{order['id']}/shipping/cost", {"price_id": shipping.uk_standard.id})
    # still the UK: the line stays
    same = (await put(client, f"{order['id']}/shipping/address", {**ADDRESS, "city": "London"}))["data"]
    assert (same["delivery_total"], same["shipping_method"]) == (500, "Standard Delivery")
    # France: the UK price no longer applies, so the shipping line goes
    moved = (await put(client, f"{order['id']}/shipping/address", {**ADDRESS, "country": "FR"}))["data"]
    assert (moved["delivery_total"], moved["tax_total"], moved["order_total"]) == (0, 519, 2599 + 519)
    assert moved["shipping_method"] is None
    full = await get(client, order["id"], "lines,shipping")
    assert full["shipping"] == {"data": None}
    assert all(not li["is_shipping"] for li in full["lines"]["data"])


async def test_resync_drops_a_price_the_basket_no_longer_reaches(
    client: Any, store: Store, shipping: FakeShipping
) -> None:
    basket_id = store.put([line("A", 1, 12000)])
    order = await create(client, basket_id)
    await put(client, f"{order['id']}/shipping/address", ADDRESS)
    free = (await put(client, f"{order['id']}/shipping/cost", {"price_id": shipping.uk_free.id}))["data"]
    assert (free["delivery_total"], free["order_total"]) == (0, 12000 + 2400)
    store.put([line("A", 1, 5000)], basket_id=basket_id)  # now under the 100.00 threshold
    synced = await create(client, basket_id)
    assert synced["shipping_method"] is None
    assert (synced["sub_total"], synced["order_total"]) == (5000, 6000)


# ---------------------------------------------------------------------------------------------
# Admin: status, expiry, listing


async def test_admin_routes_need_the_identity(client: Any, store: Store) -> None:
    order = await create(client, store.put([line("A", 1, 1000)]))
    response = await client.put(f"{URL}/{order['id']}", json={"status": "expired"})
    assert response.status == 401
    response = await client.put(
        f"{URL}/{order['id']}",
        json={"status": "expired"},
        headers=identity_headers("c", ("customer",)),
    )
    assert response.status == 403
    assert (await client.get(URL)).status == 401
    assert (await client.post(f"{URL}/{order['id']}/expire")).status == 401
    assert (await get(client, order["id"]))["status"] == "awaiting-payment"


@pytest.mark.parametrize("target", ["payment-received", "dispatched", "refunded", "payment-processing", "bogus"])
async def test_disallowed_transition_changes_nothing(client: Any, store: Store, target: str) -> None:
    order = await create(client, store.put([line("A", 1, 1000)]))
    before = await get(client, order["id"])
    response = await client.put(f"{URL}/{order['id']}", json={"status": target, "tracking_no": "T1"}, headers=admin())
    assert response.status == 422
    assert await response.json() == {"status": [f"An order cannot go from awaiting-payment to {target}"]}
    assert await get(client, order["id"]) == before


async def test_expire_then_a_new_order_for_the_basket(client: Any, store: Store) -> None:
    basket_id = store.put([line("A", 1, 1000)])
    order = await create(client, basket_id)
    response = await client.post(f"{URL}/{order['id']}/expire", headers=admin())
    assert response.status == 204
    assert (await get(client, order["id"]))["status"] == "expired"
    assert (await client.post(f"{URL}/{order['id']}/expire", headers=admin())).status == 204
    response = await client.put(f"{URL}/{order['id']}/contact", json={"email": "a@example.com"})
    assert response.status == 403
    assert await response.json() == {"error": {"http_code": 403, "message": "This order has expired"}}
    fresh = await create(client, basket_id)
    assert fresh["id"] != order["id"]
    assert fresh["status"] == "awaiting-payment"


async def test_admin_sets_status_via_put(client: Any, store: Store) -> None:
    order = await create(client, store.put([line("A", 1, 1000)]))
    response = await client.put(f"{URL}/{order['id']}", json={"status": "expired"}, headers=admin())
    assert response.status == 200
    assert (await response.json())["data"]["status"] == "expired"
    response = await client.put(f"{URL}/{order['id']}", json={}, headers=admin())
    assert response.status == 422
    assert await response.json() == {"status": ["The status field is required when tracking no is not present."]}


async def test_listing_is_placed_by_default_and_filters(client: Any, store: Store) -> None:
    order = await create(client, store.put([line("A", 1, 1000)]))
    placed = await client.get(URL, headers=admin())
    assert placed.status == 200
    body = await placed.json()
    assert all(o["placed_at"] is not None for o in body["data"])
    assert order["id"] not in {o["id"] for o in body["data"]}
    assert set(body["meta"]) == {"current_page", "per_page", "total", "last_page", "from", "to", "path"}
    awaiting = await (
        await client.get(URL, params={"status": "awaiting-payment", "per_page": "1"}, headers=admin())
    ).json()
    assert awaiting["meta"]["per_page"] == 1 and awaiting["meta"]["current_page"] == 1
    assert awaiting["meta"]["total"] >= 1 and awaiting["meta"]["last_page"] == awaiting["meta"]["total"]
    assert len(awaiting["data"]) == 1 and awaiting["data"][0]["status"] == "awaiting-payment"
    assert awaiting["links"]["prev"] is None
    ids: set[str] = set()
    today = order["created_at"][:10]
    page = 1
    while True:
        chunk = await (
            await client.get(
                URL,
                params={"status": "awaiting-payment", "from": today, "to": today, "per_page": "100", "page": str(page)},
                headers=admin(),
            )
        ).json()
        ids |= {o["id"] for o in chunk["data"]}
        if chunk["links"]["next"] is None:
            break
        page += 1
    assert order["id"] in ids
    none = await (
        await client.get(URL, params={"status": "awaiting-payment", "to": "2000-01-01"}, headers=admin())
    ).json()
    assert none["data"] == [] and none["meta"]["total"] == 0 and none["meta"]["from"] is None
    bad = await client.get(URL, params={"status": "nope", "page": "0"}, headers=admin())
    assert bad.status == 422
    assert set(await bad.json()) == {"page"}


async def test_nul_characters_are_422_not_500(client: Any, store: Store) -> None:
    order = await create(client, store.put([line("A", 1, 1000)]))
    nul = "Text must not contain NUL characters"
    assert await put(client, f"{order['id']}/contact", {"email": "a@example.com", "phone": "1\x002"}, 422) == {
        "phone": [nul]
    }
    assert await put(client, f"{order['id']}/shipping/address", {**ADDRESS, "city": "Lon\x00don"}, 422) == {
        "city": [nul]
    }
    response = await client.post(f"{URL}/process", json={"order_id": order["id"], "meta": {"k": ["\x00"]}})
    assert response.status == 422
    assert await response.json() == {"meta.k.0": [nul]}
    response = await client.get(URL, params={"to": "9999-12-31", "status": "awaiting-payment"}, headers=admin())
    assert response.status == 200
