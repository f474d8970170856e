"""Coupons through the gateway, against the five real processes: a discounted checkout from the
basket to the charge, and the coupon race (one use left, twenty checkouts: one order gets it).

What the shopper whose checkout loses the race sees: the attempt fails with a 422
`{"coupon": ["This coupon has reached its usage limit."]}` and nothing is charged (as upstream
would refuse); the order is `failed`, and once the coupon is removed from the basket and the order
synced again (`POST /orders`), it is placed at full price.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import aiohttp

from bench.shopper import UK_ADDRESS, Shopper
from gateway.auth import mint_token
from gateway.settings import GatewaySettings
from tests.support import Stack

ADMIN = {"Authorization": f"Bearer {mint_token(GatewaySettings())}"}
USED_UP = {"coupon": ["This coupon has reached its usage limit."]}


async def admin_call(session: aiohttp.ClientSession, stack: Stack, method: str, path: str, body: Any = None) -> Any:
    async with session.request(method, stack.gateway + path, json=body, headers=ADMIN) as response:
        assert response.status < 300, await response.text()
        return (await response.json())["data"] if response.status != 204 else None


async def variant(session: aiohttp.ClientSession, stack: Stack, price: str = "20.00") -> dict[str, Any]:
    sku = f"COUPON-{uuid.uuid4().hex[:10]}"
    body = {"name": sku, "variants": [{"sku": sku, "price": price, "inventory": 1000, "weight_grams": 500}]}
    return (await admin_call(session, stack, "POST", "/products?include=variants", body))["variants"]["data"][0]


async def coupon(session: aiohttp.ClientSession, stack: Stack, **fields: Any) -> dict[str, Any]:
    body = {"name": "Race", "coupon": f"E2E{uuid.uuid4().hex[:8]}", "percentage": 25, **fields}
    return await admin_call(session, stack, "POST", "/discounts", body)


async def prepare(shopper: Shopper, variant_id: str, code: str | None) -> tuple[str, str]:
    """A basket (with the coupon), its order made ready to process: (basket id, order id)."""
    basket = await shopper.call("POST", "/baskets", "/baskets", json={"variants": [{"id": variant_id, "quantity": 2}]})
    basket_id = basket["data"]["id"]
    if code is not None:
        await shopper.call("POST", f"/baskets/{basket_id}/discounts", "/baskets/{id}/discounts", json={"coupon": code})
    order = await shopper.call("POST", "/orders", "/orders", json={"basket_id": basket_id})
    order_id = order["data"]["id"]
    await shopper.call("PUT", f"/orders/{order_id}/shipping/address", "/orders/{id}/shipping/address", json=UK_ADDRESS)
    prices = (await shopper.call("GET", f"/orders/{order_id}/shipping/methods", "/orders/{id}/shipping/methods"))[
        "data"
    ]
    # A price that costs something, so that free shipping shows (the demo table has free ones too).
    price = min((p for p in prices if p["rate"] > 0), key=lambda p: p["rate"])
    await shopper.call(
        "PUT", f"/orders/{order_id}/shipping/cost", "/orders/{id}/shipping/cost", json={"price_id": price["id"]}
    )
    email = f"shopper{random.randrange(10**9)}@example.com"
    await shopper.call("PUT", f"/orders/{order_id}/contact", "/orders/{id}/contact", json={"email": email})
    await shopper.call("PUT", f"/orders/{order_id}/billing/address", "/orders/{id}/billing/address", json=UK_ADDRESS)
    return basket_id, order_id


async def process(session: aiohttp.ClientSession, stack: Stack, order_id: str, token: str) -> tuple[int, Any]:
    body = {"order_id": order_id, "payment_token": token}
    async with session.post(f"{stack.gateway}/orders/process?include=discounts", json=body) as response:
        return response.status, await response.json()


async def get_order(session: aiohttp.ClientSession, stack: Stack, order_id: str) -> dict[str, Any]:
    url = f"{stack.gateway}/orders/{order_id}?include=lines,shipping,transactions,discounts"
    async with session.get(url) as response:
        assert response.status == 200
        return (await response.json())["data"]


async def eventually(check: Any, timeout: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await check()):
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)
    return result


def charged(order: dict[str, Any]) -> list[int]:
    return [t["amount"] for t in order["transactions"]["data"] if t["success"] and not t["refund"]]


async def test_a_coupon_discounts_the_order_and_the_charge(stack: Stack, session: aiohttp.ClientSession) -> None:
    item = await variant(session, stack, price="19.99")
    discount = await coupon(session, stack, percentage=15, free_shipping=True)
    shopper = Shopper(session, stack.gateway)
    basket_id, order_id = await prepare(shopper, item["id"], discount["coupon"].lower())

    basket = (await shopper.call("GET", f"/baskets/{basket_id}?include=lines,discounts", "/baskets/{id}"))["data"]
    # 15% of 39.98 is 5.997: 6.00 off; tax 20% on 33.98 is 6.796: 6.79.
    assert (basket["sub_total"], basket["discount_total"], basket["tax_total"], basket["total"]) == (
        39.98,
        6,
        6.79,
        40.77,
    )
    status, body = await process(session, stack, order_id, "fake-valid-nonce")
    assert status == 200, body
    order = await get_order(session, stack, order_id)
    assert (order["sub_total"], order["discount_total"], order["delivery_total"], order["tax_total"]) == (
        3398,
        600,
        0,
        679,
    )
    assert order["order_total"] == 3398 + 679
    goods = [line for line in order["lines"]["data"] if not line["is_shipping"]]
    assert [(line["line_total"], line["discount_total"], line["tax_total"]) for line in goods] == [(3998, 600, 679)]
    assert order["shipping"]["data"]["discount_total"] == order["shipping"]["data"]["line_total"] > 0
    assert order["discounts"]["data"] == [
        {"id": discount["id"], "name": "Race", "coupon": discount["coupon"], "amount": 600, "free_shipping": True}
    ]
    assert charged(order) == [order["order_total"]]

    async def counted() -> bool:
        state = await admin_call(session, stack, "GET", f"/discounts/{discount['id']}")
        return (state["uses"], state["reserved"]) == (1, 0)

    await eventually(counted)


async def test_the_last_use_of_a_coupon_goes_to_one_of_twenty_concurrent_checkouts(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    item = await variant(session, stack)
    discount = await coupon(session, stack, usage_limit=2)
    first = Shopper(session, stack.gateway)
    _, first_order = await prepare(first, item["id"], discount["coupon"])
    assert (await process(session, stack, first_order, "fake-valid-nonce"))[0] == 200
    # One use left, and twenty baskets with the coupon ready to pay.
    shoppers = [Shopper(session, stack.gateway) for _ in range(20)]
    prepared = await asyncio.gather(*(prepare(s, item["id"], discount["coupon"]) for s in shoppers))
    results = await asyncio.gather(*(process(session, stack, order_id, "fake-valid-nonce") for _, order_id in prepared))

    statuses = [status for status, _ in results]
    assert statuses.count(200) == 1, results
    assert all(status == 200 or (status, body) == (422, USED_UP) for status, body in results), results
    orders = [await get_order(session, stack, order_id) for _, order_id in prepared]
    placed = [order for order in orders if order["placed_at"] is not None]
    assert len(placed) == 1 and placed[0]["discount_total"] == 1000
    assert charged(placed[0]) == [placed[0]["order_total"]]
    assert all(order["status"] == "failed" and charged(order) == [] for order in orders if order["placed_at"] is None)

    async def counted() -> bool:
        state = await admin_call(session, stack, "GET", f"/discounts/{discount['id']}")
        return (state["uses"], state["reserved"]) == (2, 0)

    await eventually(counted)

    # A loser removes the coupon, syncs the order with the basket, and pays the full price.
    loser = next(i for i, order in enumerate(orders) if order["placed_at"] is None)
    basket_id, order_id = prepared[loser]
    async with session.delete(f"{stack.gateway}/baskets/{basket_id}/discounts") as response:
        assert response.status == 204
    await shoppers[loser].call("POST", "/orders", "/orders", json={"basket_id": basket_id})
    status, body = await process(session, stack, order_id, "fake-valid-nonce")
    assert status == 200, body
    order = await get_order(session, stack, order_id)
    assert (order["discount_total"], order["discounts"]["data"]) == (0, [])
    assert order["sub_total"] == 4000 and charged(order) == [order["order_total"]]


async def test_a_failed_attempt_gives_the_use_back(stack: Stack, session: aiohttp.ClientSession) -> None:
    item = await variant(session, stack)
    discount = await coupon(session, stack, usage_limit=1)
    declined_shopper, other = Shopper(session, stack.gateway), Shopper(session, stack.gateway)
    _, declined = await prepare(declined_shopper, item["id"], discount["coupon"])
    _, second = await prepare(other, item["id"], discount["coupon"])

    status, body = await process(session, stack, declined, "fake-processor-declined-visa-nonce")
    assert (status, body) == (403, {"error": {"http_code": 403, "message": "Payment has failed"}})

    async def released() -> bool:
        state = await admin_call(session, stack, "GET", f"/discounts/{discount['id']}")
        return (state["uses"], state["reserved"]) == (0, 0)

    await eventually(released)
    status, body = await process(session, stack, second, "fake-valid-nonce")
    assert status == 200, body
    assert body["data"]["discount_total"] == 1000
    # The use is gone now: the declined order's retry is refused, and nothing is charged.
    assert await process(session, stack, declined, "fake-valid-nonce") == (422, USED_UP)
    assert charged(await get_order(session, stack, declined)) == []
