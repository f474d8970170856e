"""Discounts against the real service: the admin's CRUD, a basket's coupon, the snapshot orders
takes, and the uses reserved with a checkout's stock (limits never exceeded, even concurrently)."""

from __future__ import annotations

import asyncio
import functools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from basket.consumers import on_get_basket_snapshot, on_order_failed, on_order_placed, on_order_stock_requested
from basket.sweepers import release_expired
from services.basket.tests.testkit import API, admin, create_variant, deliver
from shared.contracts import (
    DiscountUse,
    GetBasketSnapshot,
    LineQuantity,
    OrderFailed,
    OrderPlaced,
    OrderStockRequested,
    StockRefused,
    StockReserved,
)
from tests.support import identity_headers

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

reserve = functools.partial(on_order_stock_requested, ttl_seconds=900)


def code() -> str:
    return f"T{uuid.uuid4().hex[:10]}"


async def create_discount(client: Any, **fields: Any) -> dict[str, Any]:
    body = {"name": "Test discount", "coupon": code(), "percentage": 10, **fields}
    response = await client.post(f"{API}/discounts", json=body, headers=admin())
    assert response.status == 200, await response.text()
    return (await response.json())["data"]


async def new_basket(client: Any, *lines: tuple[str, int]) -> dict[str, Any]:
    body = {"variants": [{"id": variant_id, "quantity": quantity} for variant_id, quantity in lines]}
    response = await client.post(f"{API}/baskets?include=lines", json=body)
    assert response.status == 200, await response.text()
    return (await response.json())["data"]


async def get_basket(client: Any, basket_id: str) -> dict[str, Any]:
    response = await client.get(f"{API}/baskets/{basket_id}?include=lines,discounts")
    assert response.status == 200
    return (await response.json())["data"]


async def apply(client: Any, basket_id: str, coupon: str) -> tuple[int, Any]:
    response = await client.post(
        f"{API}/baskets/{basket_id}/discounts?include=lines,discounts", json={"coupon": coupon}
    )
    return response.status, await response.json()


def stock_request(variant_id: str, *uses: dict[str, Any], email: str | None = "ada@example.com") -> OrderStockRequested:
    return OrderStockRequested(
        order_id=f"ord{uuid.uuid4().hex[:16]}",
        attempt_id=uuid.uuid4(),
        basket_id="basketfortests",
        lines=[LineQuantity(variant_id=variant_id, quantity=1)],
        discounts=[
            DiscountUse(discount_id=d["id"], name=d["name"], coupon=d["coupon"], amount=100, free_shipping=False)
            for d in uses
        ],
        email=email,
    )


def placed(request: OrderStockRequested) -> OrderPlaced:
    return OrderPlaced(
        order_id=request.order_id,
        attempt_id=request.attempt_id,
        basket_id=request.basket_id,
        reference="2026-12-0001",
        status="payment-received",
        order_total=1,
        currency="GBP",
        lines=request.lines,
        placed_at=datetime.now(UTC),
    )


def failed(request: OrderStockRequested) -> OrderFailed:
    return OrderFailed(
        order_id=request.order_id, attempt_id=request.attempt_id, basket_id=request.basket_id, reason="declined"
    )


async def counters(pool: asyncpg.Pool, discount_id: str) -> tuple[int, int]:
    row = await pool.fetchrow("SELECT uses, reserved FROM discounts WHERE id = $1", discount_id)
    return row["uses"], row["reserved"]


# ---------------------------------------------------------------------------------------------
# Admin


async def test_discount_routes_are_for_admins_only(client: Any, pool: asyncpg.Pool) -> None:
    before = await pool.fetchval("SELECT count(*) FROM discounts")
    customer = identity_headers(sub="someone", roles=("customer",))
    routes = [
        ("GET", "/discounts", None),
        ("POST", "/discounts", {"name": "x", "percentage": 10}),
        ("GET", "/discounts/zzzzzzzzzzzzzzzzzzzzzzzz", None),
        ("PUT", "/discounts/zzzzzzzzzzzzzzzzzzzzzzzz", {"percentage": 5}),
        ("DELETE", "/discounts/zzzzzzzzzzzzzzzzzzzzzzzz", None),
    ]
    for method, path, body in routes:
        response = await client.request(method, f"{API}{path}", json=body)
        assert response.status == 401, (method, path)
        response = await client.request(method, f"{API}{path}", json=body, headers=customer)
        assert response.status == 403, (method, path)
        assert (await response.json())["error"]["http_code"] == 403
    assert await pool.fetchval("SELECT count(*) FROM discounts") == before


async def test_create_read_list_update_and_delete(client: Any) -> None:
    variant = await create_variant(client)
    coupon = code()
    body = {
        "name": {"en": "Spring sale"},
        "coupon": coupon,
        "start_at": "2026-03-01 00:00:00",
        "end_at": "2036-03-01T00:00:00+01:00",
        "usage_limit": 100,
        "usage_limit_per_email": 1,
        "min_basket": "20.00",
        "variant_ids": [variant["id"]],
        "percentage": "12.5",
        "fixed_amount": 2.5,
        "free_shipping": True,
    }
    response = await client.post(f"{API}/discounts", json=body, headers=admin())
    assert response.status == 200, await response.text()
    created = (await response.json())["data"]
    assert {k: v for k, v in created.items() if k not in ("id", "created_at", "updated_at")} == {
        "name": "Spring sale",
        "attribute_data": {"name": {"webstore": {"en": "Spring sale"}}},
        "coupon": coupon,
        "status": True,
        "priority": 0,
        "stop_rules": False,
        "start_at": "2026-03-01T00:00:00.000000Z",
        "end_at": "2036-02-29T23:00:00.000000Z",
        "uses": 0,
        "reserved": 0,
        "usage_limit": 100,
        "usage_limit_per_email": 1,
        "currency": "GBP",
        "min_basket": 20,
        "product_ids": [],
        "variant_ids": [variant["id"]],
        "percentage": 12.5,
        "fixed_amount": 2.5,
        "free_shipping": True,
        "version": 1,
    }
    url = f"{API}/discounts/{created['id']}"
    response = await client.get(url, headers=admin())
    assert (response.status, (await response.json())["data"]) == (200, created)

    response = await client.get(f"{API}/discounts?per_page=100", headers=admin())
    listed = await response.json()
    assert response.status == 200 and listed["meta"]["per_page"] == 100
    assert listed["meta"]["total"] >= 1 and "links" in listed

    response = await client.put(url, json={"percentage": 20, "fixed_amount": None, "version": 1}, headers=admin())
    assert response.status == 200, await response.text()
    updated = (await response.json())["data"]
    assert (updated["percentage"], updated["fixed_amount"], updated["version"]) == (20, None, 2)
    assert updated["coupon"] == coupon and updated["free_shipping"] is True  # the others kept
    # Compare-and-set: a client that read version 1 is told the discount moved on; nothing changes.
    response = await client.put(url, json={"percentage": 30, "version": 1}, headers=admin())
    assert response.status == 409
    assert (await (await client.get(url, headers=admin())).json())["data"] == updated

    response = await client.delete(url, headers=admin())
    assert response.status == 204
    assert (await client.get(url, headers=admin())).status == 404
    assert (await client.delete(url, headers=admin())).status == 404
    assert (await client.put(url, json={"percentage": 5}, headers=admin())).status == 404


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"name": "No reward"}, {"rewards": ["A discount needs a reward: percentage, fixed_amount or free_shipping."]}),
        (
            {"name": "x", "percentage": 10, "start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"},
            {"end_at": ["The end at must be a date after start at."]},
        ),
        (
            {"name": "x", "percentage": 10, "usage_limit_per_email": 1},
            {
                "usage_limit_per_email": [
                    "A limit per email needs a coupon (the shopper cannot remove an automatic discount)."
                ]
            },
        ),
        (
            {
                "name": "x",
                "percentage": 10,
                "variant_ids": ["zzzzzzzzzzzzzzzzzzzzzzzz", "!"],
                "product_ids": ["nope0000"],
            },
            {
                "variant_ids.0": ["The selected variant_ids.0 is invalid."],
                "variant_ids.1": ["The selected variant_ids.1 is invalid."],
                "product_ids.0": ["The selected product_ids.0 is invalid."],
            },
        ),
    ],
)
async def test_discount_rules_are_422_and_create_nothing(
    client: Any, pool: asyncpg.Pool, body: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM discounts")
    response = await client.post(f"{API}/discounts", json=body, headers=admin())
    assert (response.status, await response.json()) == (422, errors)
    assert await pool.fetchval("SELECT count(*) FROM discounts") == before


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "percentage": 0},
        {"name": "x", "percentage": 100.5},
        {"name": "x", "percentage": "1.234"},
        {"name": "x", "fixed_amount": "0.001"},
        {"name": "x", "fixed_amount": -1},
        {"name": "x", "percentage": 10, "coupon": "has space"},
        {"name": "x", "percentage": 10, "usage_limit": 0},
        {"name": "", "percentage": 10},
        {"name": {}, "percentage": 10},
        {"percentage": 10},
    ],
)
async def test_malformed_discounts_are_422(client: Any, body: dict[str, Any]) -> None:
    response = await client.post(f"{API}/discounts", json=body, headers=admin())
    assert response.status == 422, await response.text()


async def test_coupon_codes_are_unique_whatever_their_case_even_when_created_at_once(client: Any) -> None:
    coupon = code()
    await create_discount(client, coupon=coupon)
    response = await client.post(
        f"{API}/discounts", json={"name": "x", "coupon": coupon.lower(), "percentage": 5}, headers=admin()
    )
    assert (response.status, await response.json()) == (422, {"coupon": ["The coupon has already been taken."]})

    racing = code()

    async def create() -> int:
        body = {"name": "race", "coupon": racing, "percentage": 5}
        response = await client.post(f"{API}/discounts", json=body, headers=admin())
        return response.status

    assert sorted(await asyncio.gather(*(create() for _ in range(10)))) == [200] + [422] * 9

    other = await create_discount(client)
    response = await client.put(f"{API}/discounts/{other['id']}", json={"coupon": racing.upper()}, headers=admin())
    assert (response.status, await response.json()) == (422, {"coupon": ["The coupon has already been taken."]})


async def test_an_update_is_checked_as_a_whole_and_null_only_clears_what_may_be_empty(client: Any) -> None:
    discount = await create_discount(client, usage_limit_per_email=2)
    url = f"{API}/discounts/{discount['id']}"
    for body, field in [
        ({"status": None}, "status"),
        ({"name": None}, "name"),
        ({"coupon": None}, "usage_limit_per_email"),  # automatic: no limit per email
        ({"percentage": None}, "rewards"),  # no reward left
    ]:
        response = await client.put(url, json=body, headers=admin())
        assert response.status == 422 and field in await response.json(), body
    response = await client.get(url, headers=admin())
    assert (await response.json())["data"] == discount


# ---------------------------------------------------------------------------------------------
# A basket's coupon


async def test_apply_a_coupon_and_remove_it(client: Any, pool: asyncpg.Pool) -> None:
    a = await create_variant(client, price="9.95", tax_rate_bp=2000)
    b = await create_variant(client, price="20.00", tax_rate_bp=0)
    basket = await new_basket(client, (a["id"], 2), (b["id"], 1))
    assert (basket["sub_total"], basket["discount_total"], basket["total"]) == (39.9, 0, 43.88)
    discount = await create_discount(client, percentage=10, free_shipping=True)

    status, body = await apply(client, basket["id"], discount["coupon"].lower())  # any case
    assert status == 200, body
    priced = body["data"]
    # 10% of 39.90 is 3.99: 1.99 off a (19.90 of 39.90 -> 1.99005), 2.00 off b; tax 20% on 17.91.
    assert [line["line_discount"] for line in priced["lines"]["data"]] == [1.99, 2]
    assert [line["tax"] for line in priced["lines"]["data"]] == [3.58, 0]
    assert (priced["sub_total"], priced["discount_total"], priced["tax_total"], priced["total"]) == (
        39.9,
        3.99,
        3.58,
        39.49,
    )
    assert priced["discounts"]["data"] == [
        {
            "id": discount["id"],
            "name": "Test discount",
            "coupon": discount["coupon"],
            "amount": 3.99,
            "free_shipping": True,
        }
    ]
    assert await get_basket(client, basket["id"]) == priced

    snapshot = (
        await on_get_basket_snapshot(pool, GetBasketSnapshot(basket_id=basket["id"]), base_currency="GBP")
    ).basket
    assert snapshot is not None and snapshot.free_shipping
    assert [(line.line_total, line.discount_total, line.tax_total) for line in snapshot.lines] == [
        (1990, 199, 358),
        (2000, 200, 0),
    ]
    assert (snapshot.sub_total, snapshot.discount_total, snapshot.tax_total, snapshot.total) == (3990, 399, 358, 3949)
    assert snapshot.discounts == [
        DiscountUse(
            discount_id=discount["id"], name="Test discount", coupon=discount["coupon"], amount=399, free_shipping=True
        )
    ]

    response = await client.delete(f"{API}/baskets/{basket['id']}/discounts")
    assert response.status == 204
    after = await get_basket(client, basket["id"])
    assert (after["discount_total"], after["total"], after["discounts"]["data"]) == (0, 43.88, [])
    version = await pool.fetchval("SELECT version FROM baskets WHERE id = $1", basket["id"])
    response = await client.delete(f"{API}/baskets/{basket['id']}/discounts")  # nothing to remove: nothing changes
    assert response.status == 204
    assert await pool.fetchval("SELECT version FROM baskets WHERE id = $1", basket["id"]) == version


async def test_a_coupon_replaces_the_one_before_and_follows_the_basket(client: Any) -> None:
    variant = await create_variant(client, price="10.00", tax_rate_bp=0)
    basket = await new_basket(client, (variant["id"], 1))
    first = await create_discount(client, percentage=10)
    second = await create_discount(client, percentage=None, fixed_amount=3, min_basket=15)
    assert (await apply(client, basket["id"], first["coupon"]))[1]["data"]["discount_total"] == 1
    # 10.00 is below the second's minimum: refused, and the first stays.
    status, body = await apply(client, basket["id"], second["coupon"])
    assert (status, body) == (
        422,
        {"coupon": ["The basket must come to at least 15.00 GBP before tax to use this coupon."]},
    )
    assert (await get_basket(client, basket["id"]))["discount_total"] == 1
    response = await client.post(
        f"{API}/basket-lines", json={"basket_id": basket["id"], "variants": [{"id": variant["id"], "quantity": 1}]}
    )
    assert response.status == 200
    status, body = await apply(client, basket["id"], second["coupon"])
    assert status == 200 and body["data"]["discount_total"] == 3 and body["data"]["total"] == 17
    # Back under the minimum: the coupon stays the basket's but takes nothing off.
    line_id = body["data"]["lines"]["data"][0]["id"]
    response = await client.put(f"{API}/basket-lines/{line_id}", json={"quantity": 1})
    assert (await response.json())["data"]["discount_total"] == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"status": False}, "This coupon code is invalid."),
        ({"start_at": "2099-01-01T00:00:00Z"}, "This coupon is not valid yet."),
        ({"start_at": "2020-01-01T00:00:00Z", "end_at": "2020-02-01T00:00:00Z"}, "This coupon has expired."),
        ({"min_basket": 1000}, "The basket must come to at least 1000.00 GBP before tax to use this coupon."),
        ({"product_ids": "other"}, "This coupon does not apply to any item in the basket."),
    ],
)
async def test_a_coupon_that_cannot_apply_is_422_and_changes_nothing(
    client: Any, pool: asyncpg.Pool, fields: dict[str, Any], message: str
) -> None:
    variant = await create_variant(client)
    if fields.get("product_ids") == "other":
        fields = {"product_ids": [(await create_variant(client))["product_id"]]}
    discount = await create_discount(client, **fields)
    basket = await new_basket(client, (variant["id"], 1))
    before = tuple(await pool.fetchrow("SELECT version, updated_at FROM baskets WHERE id = $1", basket["id"]))
    assert await apply(client, basket["id"], discount["coupon"]) == (422, {"coupon": [message]})
    assert tuple(await pool.fetchrow("SELECT version, updated_at FROM baskets WHERE id = $1", basket["id"])) == before
    assert await pool.fetchval("SELECT count(*) FROM basket_coupons WHERE basket_id = $1", basket["id"]) == 0


async def test_unknown_coupons_baskets_and_used_baskets(client: Any, pool: asyncpg.Pool) -> None:
    variant = await create_variant(client)
    basket = await new_basket(client, (variant["id"], 1))
    assert await apply(client, basket["id"], "NO-SUCH-COUPON") == (422, {"coupon": ["This coupon code is invalid."]})
    discount = await create_discount(client)
    for status, body in [
        await apply(client, "zzzzzzzzzzzzzzzzzzzzzzzz", discount["coupon"]),
        await apply(client, "NOT-AN-ID", discount["coupon"]),
    ]:
        assert status == 404 and body["error"]["http_code"] == 404
    assert (await client.delete(f"{API}/baskets/zzzzzzzzzzzzzzzzzzzzzzzz/discounts")).status == 404

    request = stock_request(variant["id"])
    await deliver(pool, reserve, request)
    await deliver(pool, on_order_placed, placed(request).model_copy(update={"basket_id": basket["id"]}))
    status, body = await apply(client, basket["id"], discount["coupon"])
    assert status == 403 and body["error"]["http_code"] == 403
    assert (await client.delete(f"{API}/baskets/{basket['id']}/discounts")).status == 403


async def test_an_automatic_discount_applies_to_every_basket_meeting_its_criteria(client: Any) -> None:
    eligible = await create_variant(client, price="10.00", tax_rate_bp=0)
    other = await create_variant(client, price="10.00", tax_rate_bp=0)
    automatic = await create_discount(
        client, coupon=None, percentage=None, fixed_amount=1, variant_ids=[eligible["id"]], priority=5
    )
    try:
        basket = await new_basket(client, (eligible["id"], 1), (other["id"], 1))
        assert [line["line_discount"] for line in basket["lines"]["data"]] == [1, 0]
        coupon = await create_discount(client, percentage=50, stop_rules=True)
        # Taken after the automatic one (lower priority), on what it left: 50% of 9 + 10.
        status, body = await apply(client, basket["id"], coupon["coupon"])
        assert status == 200 and [line["line_discount"] for line in body["data"]["lines"]["data"]] == [5.5, 5]
        assert [d["id"] for d in body["data"]["discounts"]["data"]] == [automatic["id"], coupon["id"]]
        assert (await new_basket(client, (other["id"], 1)))["discount_total"] == 0
    finally:
        assert (await client.delete(f"{API}/discounts/{automatic['id']}", headers=admin())).status == 204


# ---------------------------------------------------------------------------------------------
# Uses, reserved with a checkout's stock


async def test_the_last_use_goes_to_one_checkout_and_a_failure_gives_it_back(client: Any, pool: asyncpg.Pool) -> None:
    variant = await create_variant(client, inventory=100)
    discount = await create_discount(client, usage_limit=1)
    first = stock_request(variant["id"], discount)
    assert isinstance((await deliver(pool, reserve, first)).emitted[0], StockReserved)
    assert await counters(pool, discount["id"]) == (0, 1)

    second = stock_request(variant["id"], discount)
    refused = (await deliver(pool, reserve, second)).emitted
    assert refused == [
        StockRefused(
            order_id=second.order_id,
            attempt_id=second.attempt_id,
            errors={"coupon": ["This coupon has reached its usage limit."]},
        )
    ]
    assert await pool.fetchval("SELECT reserved FROM variants WHERE id = $1", variant["id"]) == 1  # nothing of it held
    # Applying the coupon to a basket is refused as well while the use is held.
    basket = await new_basket(client, (variant["id"], 1))
    assert await apply(client, basket["id"], discount["coupon"]) == (
        422,
        {"coupon": ["This coupon has reached its usage limit."]},
    )
    response = await client.delete(f"{API}/discounts/{discount['id']}", headers=admin())
    assert response.status == 409  # a checkout holds it

    await deliver(pool, on_order_failed, failed(first))
    assert await counters(pool, discount["id"]) == (0, 0)
    third = stock_request(variant["id"], discount)
    assert isinstance((await deliver(pool, reserve, third)).emitted[0], StockReserved)
    await deliver(pool, on_order_placed, placed(third))
    await deliver(pool, on_order_placed, placed(third))  # another delivery: counted once
    assert await counters(pool, discount["id"]) == (1, 0)
    late = (await deliver(pool, reserve, stock_request(variant["id"], discount))).emitted[0]
    assert isinstance(late, StockRefused)


async def test_twenty_concurrent_checkouts_for_the_last_use_reserve_it_once(client: Any, pool: asyncpg.Pool) -> None:
    variants = [await create_variant(client, inventory=100) for _ in range(3)]
    discount = await create_discount(client, usage_limit=3)
    holder = stock_request(variants[0]["id"], discount)
    await deliver(pool, reserve, holder)
    await deliver(pool, on_order_placed, placed(holder))
    await deliver(pool, reserve, stock_request(variants[1]["id"], discount))  # in flight: counts
    # One use left; twenty checkouts (of different variants, in both lock orders) want it.
    requests = [stock_request(variants[i % 3]["id"], discount) for i in range(20)]
    contexts = await asyncio.gather(*(deliver(pool, reserve, request) for request in requests))
    outcomes = [type(ctx.emitted[0]).__name__ for ctx in contexts]
    assert outcomes.count("StockReserved") == 1, outcomes
    assert await counters(pool, discount["id"]) == (1, 2)
    held = await pool.fetchval("SELECT count(*) FROM discount_uses WHERE discount_id = $1", discount["id"])
    assert held == 3


async def test_a_limit_per_email_counts_the_contact_whatever_its_case(client: Any, pool: asyncpg.Pool) -> None:
    variant = await create_variant(client, inventory=100)
    discount = await create_discount(client, usage_limit_per_email=1)
    first = stock_request(variant["id"], discount, email="Grace@Example.com")
    await deliver(pool, reserve, first)
    again = (await deliver(pool, reserve, stock_request(variant["id"], discount, email=" grace@example.com"))).emitted
    assert again[0].errors == {
        "coupon": ["This coupon has already been used the maximum number of times with this email address."]
    }
    other = (await deliver(pool, reserve, stock_request(variant["id"], discount, email="alan@example.com"))).emitted
    assert isinstance(other[0], StockReserved)
    no_email = (await deliver(pool, reserve, stock_request(variant["id"], discount, email=None))).emitted
    assert isinstance(no_email[0], StockRefused)
    # The email itself is not kept.
    keys = await pool.fetch("SELECT email_key FROM discount_uses WHERE discount_id = $1", discount["id"])
    assert all("@" not in row["email_key"] for row in keys)
    await deliver(pool, on_order_failed, failed(first))
    assert isinstance(
        (await deliver(pool, reserve, stock_request(variant["id"], discount, email="grace@example.com"))).emitted[0],
        StockReserved,
    )


async def test_an_ended_or_deleted_discount_refuses_the_checkout(client: Any, pool: asyncpg.Pool) -> None:
    variant = await create_variant(client, inventory=100)
    ending = await create_discount(client)
    gone = await create_discount(client, coupon=None, variant_ids=[variant["id"]])
    request = stock_request(variant["id"], ending, gone)
    url = f"{API}/discounts/{ending['id']}"
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert (await client.put(url, json={"end_at": past}, headers=admin())).status == 200
    assert (await client.delete(f"{API}/discounts/{gone['id']}", headers=admin())).status == 204
    refused = (await deliver(pool, reserve, request)).emitted[0]
    assert isinstance(refused, StockRefused)
    assert refused.errors == {
        "coupon": ["This coupon has expired."],
        "discounts.1.id": ["This discount is no longer available."],
    }


async def test_an_expired_reservation_gives_its_use_back(client: Any, pool: asyncpg.Pool) -> None:
    variant = await create_variant(client, inventory=100)
    discount = await create_discount(client, usage_limit=1)
    request = stock_request(variant["id"], discount)
    await deliver(pool, on_order_stock_requested, request, ttl_seconds=0)
    assert await counters(pool, discount["id"]) == (0, 1)
    await release_expired(pool)  # or the app's own sweeper, first
    assert await counters(pool, discount["id"]) == (0, 0)
    # Placed after all (a placed order is sold): the use is counted, not held again.
    await deliver(pool, on_order_placed, placed(request))
    assert await counters(pool, discount["id"]) == (1, 0)
