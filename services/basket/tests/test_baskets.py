"""Baskets and basket lines over HTTP (in-process app, real database and broker)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import ROUND_DOWN, Decimal
from typing import Any

import asyncpg
import pytest

from basket import domain
from basket.consumers import on_get_basket_snapshot, on_order_placed
from basket.settings import BasketSettings
from services.basket.tests.testkit import API, admin, create_product, create_variant, deliver, event_tap, sku
from shared.bus import RpcClient, Topology, connect
from shared.contracts import BasketSnapshotReply, GetBasketSnapshot, LineQuantity, OrderPlaced

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

CENT = Decimal("0.01")


def expected_line(price: str, rate_bp: int, quantity: int) -> tuple[Decimal, Decimal]:
    """(line total, line tax) in pounds, worked out with decimals: tax rounded down per line."""
    line_total = Decimal(price) * quantity
    tax = (line_total * rate_bp / 10_000).quantize(CENT, rounding=ROUND_DOWN)
    return line_total, tax


TOTALS_CASES = [
    pytest.param([("12.50", 2000, 1)], id="one-line"),
    pytest.param([("0.99", 2000, 3)], id="tax-rounded-down"),
    pytest.param([("7.99", 0, 2), ("12.50", 2000, 1)], id="zero-rated-and-standard"),
    pytest.param([("0.33", 2000, 1), ("0.33", 2000, 2)], id="per-line-rounding"),
    pytest.param([("19.99", 2000, 7), ("0.01", 2000, 1), ("4.25", 0, 10)], id="mixed"),
    pytest.param([("3.33", 550, 3), ("1000.00", 2000, 99)], id="reduced-rate-and-large"),
]


@pytest.mark.parametrize("lines", TOTALS_CASES)
async def test_totals_are_exact(client: Any, lines: list[tuple[str, int, int]]) -> None:
    product = await create_product(
        client, *({"price": price, "tax_rate_bp": rate, "inventory": 1000} for price, rate, _ in lines)
    )
    variants = product["variants"]["data"]
    body = {"variants": [{"id": v["id"], "quantity": q} for v, (_, _, q) in zip(variants, lines, strict=True)]}
    response = await client.post(f"{API}/baskets?include=lines", json=body)
    assert response.status == 200, await response.text()
    basket = (await response.json())["data"]

    expected = [expected_line(price, rate, quantity) for price, rate, quantity in lines]
    sub_total = sum((total for total, _ in expected), Decimal(0))
    tax_total = sum((tax for _, tax in expected), Decimal(0))
    assert Decimal(str(basket["sub_total"])) == sub_total
    assert Decimal(str(basket["tax_total"])) == tax_total
    assert Decimal(str(basket["total"])) == sub_total + tax_total
    assert basket["discount_total"] == 0
    for line, (price, rate, quantity), (line_total, tax) in zip(basket["lines"]["data"], lines, expected, strict=True):
        assert line["quantity"] == quantity
        assert Decimal(str(line["unit_price"])) == Decimal(price)
        assert Decimal(str(line["unit_tax"])) == (Decimal(price) * rate / 10_000).quantize(CENT, rounding=ROUND_DOWN)
        assert Decimal(str(line["line_total"])) == line_total
        assert Decimal(str(line["tax"])) == tax
        assert line["line_discount"] == 0


async def test_basket_shape_and_includes(client: Any) -> None:
    variant = await create_variant(client, price="12.50")
    response = await client.post(
        f"{API}/basket-lines?include=lines.variant",
        json={"variants": [{"id": variant["id"], "quantity": 2, "meta": {"gift": True}}], "meta": {"source": "t"}},
    )
    assert response.status == 200, await response.text()
    basket = (await response.json())["data"]
    line = basket["lines"]["data"][0]
    assert basket == {
        "id": basket["id"],
        "sub_total": 25,
        "tax_total": 5,
        "discount_total": 0,
        "total": 30,
        "currency": "GBP",
        "meta": {"source": "t"},
        "changed": False,
        "lines": {
            "data": [
                {
                    "id": line["id"],
                    "quantity": 2,
                    "unit_price": 12.5,
                    "unit_tax": 2.5,
                    "line_total": 25,
                    "tax": 5,
                    "line_discount": 0,
                    "meta": {"gift": True},
                    "variant": {"data": variant},
                }
            ]
        },
    }
    plain = await (await client.get(f"{API}/baskets/{basket['id']}")).json()
    assert "lines" not in plain["data"]
    lines_only = await (await client.get(f"{API}/baskets/{basket['id']}?includes=lines")).json()
    assert "variant" not in lines_only["data"]["lines"]["data"][0]
    response = await client.get(f"{API}/baskets/{uuid.uuid4().hex}")
    assert response.status == 404


async def test_replace_merge_update_remove_delete(client: Any) -> None:
    product = await create_product(client, {"price": "2.00"}, {"price": "3.00"}, {"price": "5.00"})
    a, b, c = (v["id"] for v in product["variants"]["data"])

    async def call(method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = await client.request(method, f"{API}{path}?include=lines.variant", json=body)
        assert response.status == 200, await response.text()
        return (await response.json())["data"]

    def quantities(basket: dict[str, Any]) -> dict[str, int]:
        return {line["variant"]["data"]["id"]: line["quantity"] for line in basket["lines"]["data"]}

    def line_of(basket: dict[str, Any], variant_id: str) -> str:
        return next(line["id"] for line in basket["lines"]["data"] if line["variant"]["data"]["id"] == variant_id)

    basket = await call("POST", "/baskets", {"variants": [{"id": a, "quantity": 1}, {"id": b, "quantity": 2}]})
    basket_id = basket["id"]
    assert quantities(basket) == {a: 1, b: 2}
    assert basket["sub_total"] == 8

    # Add merges into the existing line of a variant.
    basket = await call("POST", "/basket-lines", {"basket_id": basket_id, "variants": [{"id": a, "quantity": 4}]})
    assert quantities(basket) == {a: 5, b: 2} and len(basket["lines"]["data"]) == 2

    # Replace: every line goes, the new ones come.
    basket = await call("POST", "/baskets", {"basket_id": basket_id, "variants": [{"id": c, "quantity": 1}]})
    assert basket["id"] == basket_id
    assert quantities(basket) == {c: 1} and basket["total"] == 6

    basket = await call("POST", "/basket-lines", {"basket_id": basket_id, "variants": [{"id": a, "quantity": 1}]})
    line_a, line_c = line_of(basket, a), line_of(basket, c)

    basket = await call("PUT", f"/basket-lines/{line_a}", {"quantity": 3})
    assert quantities(basket) == {a: 3, c: 1}
    basket = await call("POST", f"/basket-lines/{line_a}/add", {"quantity": 2})
    assert quantities(basket) == {a: 5, c: 1}
    basket = await call("POST", f"/basket-lines/{line_a}/add", None)
    assert quantities(basket) == {a: 6, c: 1}
    basket = await call("PUT", f"/basket-lines/{line_a}/remove", {"quantity": 4})
    assert quantities(basket) == {a: 2, c: 1}
    basket = await call("PUT", f"/basket-lines/{line_a}/remove", {})
    assert quantities(basket) == {a: 1, c: 1}
    basket = await call("PUT", f"/basket-lines/{line_a}/remove", {"quantity": 5})
    assert quantities(basket) == {c: 1}
    assert basket["sub_total"] == 5

    basket = await call("POST", "/basket-lines", {"basket_id": basket_id, "variants": [{"id": b, "quantity": 1}]})
    line_b = line_of(basket, b)
    basket = await call("DELETE", f"/basket-lines/{line_c}")
    assert quantities(basket) == {b: 1}
    basket = await call("DELETE", "/basket-lines", {"lines": [{"id": line_b}]})
    assert basket["lines"]["data"] == [] and basket["total"] == 0
    response = await client.delete(f"{API}/basket-lines/{line_b}")
    assert response.status == 404


# ---------------------------------------------------------------------------------------------
# Every rule: the right field, the upstream message, and nothing changed


@pytest.fixture
async def catalogue(client: Any) -> dict[str, dict[str, Any]]:
    specs = {
        "plain": {"inventory": 10},
        "min_qty": {"min_qty": 3},
        "min_batch": {"min_batch": 4},
        "both": {"min_qty": 3, "min_batch": 4},
        "max_qty": {"max_qty": 5},
        "low": {"inventory": 2, "backorder": "in-stock"},
        "expected": {"inventory": 2, "incoming": 3, "backorder": "expected"},
        "always": {"inventory": 0, "backorder": "always"},
        "off": {"purchasable": False},
    }
    product = await create_product(client, *specs.values())
    return dict(zip(specs, product["variants"]["data"], strict=True))


async def new_basket(client: Any, variant_id: str, quantity: int = 1) -> dict[str, Any]:
    response = await client.post(f"{API}/basket-lines?include=lines", json=_add(variant_id, quantity))
    assert response.status == 200, await response.text()
    return (await response.json())["data"]


async def _state(client: Any, admin_db: asyncpg.Connection, basket_id: str) -> tuple[Any, int]:
    body = await (await client.get(f"{API}/baskets/{basket_id}?include=lines")).json()
    version = await admin_db.fetchval("SELECT version FROM basket.baskets WHERE id = $1", basket_id)
    return body, version


def _add(variant: str, quantity: Any) -> dict[str, Any]:
    return {"variants": [{"id": variant, "quantity": quantity}]}


ADD_CASES: list[Any] = [
    pytest.param(
        lambda v: {"variants": [{"id": v["plain"]["id"], "quantity": 1}, {"id": v["plain"]["id"], "quantity": 1}]},
        {
            "variants.0.id": ["The variants.0.id field has a duplicate value."],
            "variants.1.id": ["The variants.1.id field has a duplicate value."],
        },
        id="distinct",
    ),
    pytest.param(
        lambda v: _add("nosuchvariant00", 1), {"variants.0.id": ["The variant ID is incorrect"]}, id="unknown"
    ),
    pytest.param(lambda v: _add("Not An Id!", 1), {"variants.0.id": ["The variant ID is incorrect"]}, id="malformed"),
    pytest.param(
        lambda v: {"variants": [{"id": v["plain"]["id"], "quantity": 1}, {"id": v["off"]["id"], "quantity": 1}]},
        lambda v: {"variants.1.id": [f"Product {v['off']['sku']} is no longer available"]},
        id="not-purchasable",
    ),
    pytest.param(
        lambda v: _add(v["plain"]["id"], 0),
        {"variants.0.quantity": ["The variants.0.quantity must be at least 1."]},
        id="zero",
    ),
    pytest.param(
        lambda v: _add(v["plain"]["id"], -3),
        {"variants.0.quantity": ["The variants.0.quantity must be at least 1."]},
        id="negative",
    ),
    pytest.param(
        lambda v: _add(v["always"]["id"], domain.MAX_QUANTITY + 1),
        {"variants.0.quantity": ["The variants.0.quantity may not be greater than 10000."]},
        id="cap",
    ),
    pytest.param(
        lambda v: _add(v["plain"]["id"], 1.5),
        {"variants.0.quantity": ["Input should be a valid integer, got a number with a fractional part"]},
        id="fraction",
    ),
    pytest.param(
        lambda v: _add(v["plain"]["id"], True),
        {"variants.0.quantity": ["Input should be a valid integer"]},
        id="boolean",
    ),
    pytest.param(
        lambda v: _add(v["min_qty"]["id"], 2),
        {"variants.0.quantity": ["You must add at least 3 items."]},
        id="min-qty",
    ),
    pytest.param(
        lambda v: _add(v["min_batch"]["id"], 6),
        {"variants.0.quantity": ["You must add this item in multiples of 4"]},
        id="min-batch",
    ),
    pytest.param(
        lambda v: _add(v["both"]["id"], 2),
        {"variants.0.quantity": ["You must add at least 3 items.", "You must add this item in multiples of 4"]},
        id="min-qty-and-batch",
    ),
    pytest.param(
        lambda v: _add(v["max_qty"]["id"], 6),
        {"variants.0.quantity": ["You cannot add more than 5 of this item."]},
        id="max-qty",
    ),
    pytest.param(
        lambda v: _add(v["low"]["id"], 3), {"variants.0.quantity": ["Insufficient stock levels"]}, id="in-stock"
    ),
    pytest.param(
        lambda v: _add(v["expected"]["id"], 6), {"variants.0.quantity": ["Insufficient stock levels"]}, id="expected"
    ),
    pytest.param(
        # The basket already holds 2 of "plain" (inventory 10): the merged quantity is checked.
        lambda v: _add(v["plain"]["id"], 9),
        {"variants.0.quantity": ["Insufficient stock levels"]},
        id="merged-quantity",
    ),
    pytest.param(
        lambda v: {"basket_id": "nosuchbasket000", **_add(v["plain"]["id"], 1)},
        {"basket_id": ["The selected basket id is invalid."]},
        id="unknown-basket",
    ),
    pytest.param(lambda v: {}, {"variants": ["Field required"]}, id="no-variants"),
]


@pytest.mark.parametrize(("body", "errors"), ADD_CASES)
async def test_add_rules(client: Any, admin_db: asyncpg.Connection, catalogue: Any, body: Any, errors: Any) -> None:
    response = await client.post(f"{API}/basket-lines", json=_add(catalogue["plain"]["id"], 2))
    basket_id = (await response.json())["data"]["id"]
    before = await _state(client, admin_db, basket_id)

    request = body(catalogue)
    request.setdefault("basket_id", basket_id)
    response = await client.post(f"{API}/basket-lines", json=request)
    assert response.status == 422
    assert await response.json() == (errors(catalogue) if callable(errors) else errors)
    assert await _state(client, admin_db, basket_id) == before


async def test_rules_pass_at_their_limits(client: Any, catalogue: Any) -> None:
    ok = {"min_qty": 3, "min_batch": 8, "both": 4, "max_qty": 5, "low": 2, "expected": 5, "always": 10_000}
    body = {"variants": [{"id": catalogue[name]["id"], "quantity": q} for name, q in ok.items()]}
    response = await client.post(f"{API}/baskets?include=lines", json=body)
    assert response.status == 200, await response.text()
    assert [line["quantity"] for line in (await response.json())["data"]["lines"]["data"]] == list(ok.values())


LINE_CASES: list[Any] = [
    pytest.param("PUT", "", {"quantity": 0}, "plain", {"quantity": ["The quantity must be at least 1."]}, id="zero"),
    pytest.param("PUT", "", {}, "plain", {"quantity": ["Field required"]}, id="missing"),
    pytest.param(
        "PUT", "", {"quantity": 11}, "plain", {"quantity": ["Insufficient stock levels"]}, id="update-over-stock"
    ),
    pytest.param(
        "PUT", "", {"quantity": 5}, "min_batch", {"quantity": ["You must add this item in multiples of 4"]}, id="batch"
    ),
    pytest.param(
        "POST", "/add", {"quantity": 2}, "max_qty", {"quantity": ["You cannot add more than 5 of this item."]}, id="add"
    ),
    pytest.param(
        "POST", "/add", {"quantity": -1}, "plain", {"quantity": ["The quantity must be at least 1."]}, id="add-neg"
    ),
    pytest.param(
        "PUT", "/remove", {"quantity": 2}, "min_qty", {"quantity": ["You must add at least 3 items."]}, id="remove"
    ),
    pytest.param(
        "PUT", "/remove", {"quantity": 0}, "plain", {"quantity": ["The quantity must be at least 1."]}, id="remove-0"
    ),
]

START = {"plain": 2, "min_batch": 4, "max_qty": 4, "min_qty": 4}


@pytest.mark.parametrize(("method", "suffix", "body", "variant", "errors"), LINE_CASES)
async def test_line_rules(
    client: Any,
    admin_db: asyncpg.Connection,
    catalogue: Any,
    method: str,
    suffix: str,
    body: Any,
    variant: str,
    errors: Any,
) -> None:
    response = await client.post(
        f"{API}/basket-lines?include=lines", json=_add(catalogue[variant]["id"], START[variant])
    )
    created = (await response.json())["data"]
    line_id = created["lines"]["data"][0]["id"]
    before = await _state(client, admin_db, created["id"])
    response = await client.request(method, f"{API}/basket-lines/{line_id}{suffix}", json=body)
    assert response.status == 422
    assert await response.json() == errors
    assert await _state(client, admin_db, created["id"]) == before


async def test_a_purchasable_change_is_checked_on_update(client: Any, catalogue: Any) -> None:
    variant = await create_variant(client)
    response = await client.post(f"{API}/basket-lines?include=lines", json=_add(variant["id"], 1))
    line_id = (await response.json())["data"]["lines"]["data"][0]["id"]
    await client.put(f"{API}/products/variants/{variant['id']}", json={"purchasable": False}, headers=admin())
    response = await client.put(f"{API}/basket-lines/{line_id}", json={"quantity": 2})
    assert response.status == 422
    assert await response.json() == {"quantity": [f"Product {variant['sku']} is no longer available"]}
    # Taking it out of the basket is always possible.
    response = await client.put(f"{API}/basket-lines/{line_id}/remove", json={"quantity": 1})
    assert response.status == 200


async def test_delete_lines_rules(client: Any, admin_db: asyncpg.Connection, catalogue: Any) -> None:
    first = await new_basket(client, catalogue["plain"]["id"])
    other = await new_basket(client, catalogue["plain"]["id"])
    before = await _state(client, admin_db, first["id"])
    lines = [{"id": first["lines"]["data"][0]["id"]}, {"id": other["lines"]["data"][0]["id"]}, {"id": "nosuchline0"}]
    response = await client.delete(f"{API}/basket-lines", json={"lines": lines})
    assert response.status == 422
    assert await response.json() == {
        "lines.1.id": ["The selected lines.1.id is invalid."],
        "lines.2.id": ["The selected lines.2.id is invalid."],
    }
    assert await _state(client, admin_db, first["id"]) == before
    response = await client.delete(f"{API}/basket-lines", json={"lines": []})
    assert response.status == 422
    assert list(await response.json()) == ["lines"]


async def test_create_basket_rules(client: Any, catalogue: Any) -> None:
    response = await client.post(f"{API}/baskets", json={"currency": "XTS"})
    assert response.status == 422
    assert await response.json() == {"currency": ["The selected currency is invalid."]}
    response = await client.post(f"{API}/baskets", data=b"{not json")
    assert response.status == 400
    response = await client.post(f"{API}/baskets", json=[1, 2])
    assert response.status == 422
    response = await client.post(f"{API}/baskets", json={"meta": {"note": "a\x00b"}})
    assert response.status == 422
    assert await response.json() == {"meta.note": ["Text must not contain NUL characters"]}
    response = await client.post(f"{API}/baskets", json={})
    assert response.status == 200
    assert (await response.json())["data"]["total"] == 0


# ---------------------------------------------------------------------------------------------
# A used basket, concurrency, events, the snapshot


async def test_a_used_basket_refuses_changes(client: Any, pool: asyncpg.Pool, catalogue: Any) -> None:
    created = await new_basket(client, catalogue["plain"]["id"])
    basket_id, line_id = created["id"], created["lines"]["data"][0]["id"]
    placed = OrderPlaced(
        order_id=f"order{uuid.uuid4().hex[:12]}",
        attempt_id=uuid.uuid4(),
        basket_id=basket_id,
        reference="2026-01-0001",
        status="payment-received",
        order_total=120,
        currency="GBP",
        lines=[LineQuantity(variant_id=catalogue["plain"]["id"], quantity=1)],
        placed_at="2026-01-01T00:00:00Z",
    )
    await deliver(pool, on_order_placed, placed)
    forbidden = {"error": {"http_code": 403, "message": domain.MSG_BASKET_USED}}
    for method, path, body in [
        ("POST", "/baskets", {"basket_id": basket_id, "variants": []}),
        ("POST", "/basket-lines", {"basket_id": basket_id, **_add(catalogue["plain"]["id"], 1)}),
        ("PUT", f"/basket-lines/{line_id}", {"quantity": 2}),
        ("POST", f"/basket-lines/{line_id}/add", {"quantity": 1}),
        ("PUT", f"/basket-lines/{line_id}/remove", {"quantity": 1}),
        ("DELETE", f"/basket-lines/{line_id}", None),
        ("DELETE", "/basket-lines", {"lines": [{"id": line_id}]}),
    ]:
        response = await client.request(method, f"{API}{path}", json=body)
        assert (response.status, await response.json()) == (403, forbidden), (method, path)
    response = await client.get(f"{API}/baskets/{basket_id}?include=lines")
    assert response.status == 200
    assert (await response.json())["data"] == created
    reply = await on_get_basket_snapshot(pool, GetBasketSnapshot(basket_id=basket_id), base_currency="GBP")
    assert reply.basket is not None and reply.basket.used is True


async def test_twenty_concurrent_adds_end_as_one_line(client: Any) -> None:
    variant = await create_variant(client, inventory=1000)
    response = await client.post(f"{API}/basket-lines", json=_add(variant["id"], 1))
    basket_id = (await response.json())["data"]["id"]

    async def add(quantity: int) -> int:
        response = await client.post(
            f"{API}/basket-lines", json={"basket_id": basket_id, **_add(variant["id"], quantity)}
        )
        return response.status

    quantities = [1 + i % 3 for i in range(20)]
    assert await asyncio.gather(*(add(q) for q in quantities)) == [200] * 20
    body = await (await client.get(f"{API}/baskets/{basket_id}?include=lines")).json()
    lines = body["data"]["lines"]["data"]
    assert len(lines) == 1
    assert lines[0]["quantity"] == 1 + sum(quantities)
    assert body["data"]["sub_total"] == 10 * (1 + sum(quantities))


async def test_concurrent_edits_of_one_basket_lose_nothing(client: Any) -> None:
    """Every change of a basket is a unit of work that locks the basket first: concurrent edits of
    one line, and of other lines of the same basket, queue and none is lost."""
    product = await create_product(client, *({"inventory": 10_000} for _ in range(4)))
    first, *others = (v["id"] for v in product["variants"]["data"])
    created = await new_basket(client, first, 11)  # ten removals of one never empty it
    basket_id, line_id = created["id"], created["lines"]["data"][0]["id"]

    async def change(i: int) -> int:
        if i % 3 == 0:
            response = await client.post(f"{API}/basket-lines/{line_id}/add", json={"quantity": 2})
        elif i % 3 == 1:
            response = await client.post(
                f"{API}/basket-lines", json={"basket_id": basket_id, **_add(others[i % len(others)], 1)}
            )
        else:
            response = await client.put(f"{API}/basket-lines/{line_id}/remove", json={"quantity": 1})
        return response.status

    changes = range(30)
    assert await asyncio.gather(*(change(i) for i in changes)) == [200] * 30
    body = await (await client.get(f"{API}/baskets/{basket_id}?include=lines.variant")).json()
    quantities = {line["variant"]["data"]["id"]: line["quantity"] for line in body["data"]["lines"]["data"]}
    expected = {first: 11 + 2 * 10 - 10}
    for i in changes:
        if i % 3 == 1:
            expected[others[i % len(others)]] = expected.get(others[i % len(others)], 0) + 1
    assert quantities == expected


async def test_every_change_announces_basket_changed(client: Any, infra: Any) -> None:
    variant = await create_variant(client, price="12.50", tax_rate_bp=2000)
    async with event_tap(infra, "basket.changed.v1") as tap:
        request_id = f"req-{uuid.uuid4().hex}"
        response = await client.post(
            f"{API}/basket-lines", json=_add(variant["id"], 3), headers={"X-Request-Id": request_id}
        )
        basket_id = (await response.json())["data"]["id"]
        event = await tap.wait_for(lambda e: e["correlation_id"] == request_id)
        assert event["type"] == "basket.changed" and event["producer"] == "basket"
        assert event["payload"] == {
            "basket_id": basket_id,
            "currency": "GBP",
            "sub_total": 3750,
            "tax_total": 750,
            "total": 4500,
            "line_count": 1,
            "discount_total": 0,
        }
        second = f"req-{uuid.uuid4().hex}"
        await client.post(f"{API}/baskets", json={"basket_id": basket_id}, headers={"X-Request-Id": second})
        event = await tap.wait_for(lambda e: e["correlation_id"] == second)
        assert event["payload"]["line_count"] == 0 and event["payload"]["total"] == 0


async def test_snapshot_through_the_broker(client: Any, settings: BasketSettings, pool: asyncpg.Pool) -> None:
    product = await create_product(
        client,
        {"sku": (a := sku()), "name": "Red", "price": "0.99", "weight_grams": 250},
        {"sku": (b := sku()), "options": {"size": "XL"}, "price": "7.99", "tax_rate_bp": 0, "requires_shipping": False},
        name="Snapshot product",
    )
    red, xl = product["variants"]["data"]
    body = {"variants": [{"id": red["id"], "quantity": 3}, {"id": xl["id"], "quantity": 2}]}
    basket_id = (await (await client.post(f"{API}/baskets", json=body)).json())["data"]["id"]

    connection = await connect(settings)
    rpc = RpcClient(Topology(settings.bus_namespace, "orders"), default_timeout=5)
    try:
        await rpc.start(connection)
        reply = await rpc.call(GetBasketSnapshot(basket_id=basket_id))
        missing = await rpc.call(GetBasketSnapshot(basket_id="nosuchbasket00"))
    finally:
        await rpc.stop()
        await connection.close()
    assert isinstance(reply, BasketSnapshotReply)
    assert missing.basket is None
    snapshot = reply.basket
    assert snapshot is not None
    assert snapshot.model_dump() == {
        "id": basket_id,
        "currency": "GBP",
        "used": False,
        "sub_total": 297 + 1598,
        "tax_total": 59,
        "discount_total": 0,
        "total": 297 + 1598 + 59,
        "weight_grams": 750,
        "lines": [
            {
                "variant_id": red["id"],
                "product_id": product["id"],
                "sku": a,
                "description": "Snapshot product",
                "option": "Red",
                "quantity": 3,
                "unit_price": 99,
                "unit_qty": 1,
                "tax_rate_bp": 2000,
                "line_total": 297,
                "tax_total": 59,
                "discount_total": 0,
                "weight_grams": 750,
                "requires_shipping": True,
            },
            {
                "variant_id": xl["id"],
                "product_id": product["id"],
                "sku": b,
                "description": "Snapshot product",
                "option": "XL",
                "quantity": 2,
                "unit_price": 799,
                "unit_qty": 1,
                "tax_rate_bp": 0,
                "line_total": 1598,
                "tax_total": 0,
                "discount_total": 0,
                "weight_grams": 0,
                "requires_shipping": False,
            },
        ],
        "customer_id": None,
        "discounts": [],
        "free_shipping": False,
        "base_currency": "GBP",
        "exchange_rate": "1",
    }
    assert await on_get_basket_snapshot(pool, GetBasketSnapshot(basket_id=basket_id), base_currency="GBP") == reply
