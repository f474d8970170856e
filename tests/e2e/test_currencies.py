"""A checkout in a second currency through the gateway, against the real processes: the demo data's
euro (1.165 per pound), a coupon, shipping priced in euros, the charge and the invoice in euros,
and the order keeping the rate it was priced at when the rate changes afterwards."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp

from bench.shopper import UK_ADDRESS, Shopper
from tests.e2e.test_coupons import admin_call, charged, coupon, get_order, process, variant
from tests.e2e.test_invoice import pdf_text
from tests.support import Stack

EURO = {"X-CANDY-CURRENCY": "EUR"}


async def euro_id(session: aiohttp.ClientSession, stack: Stack) -> tuple[str, int]:
    async with session.get(f"{stack.gateway}/currencies?per_page=100") as response:
        assert response.status == 200
        listed = (await response.json())["data"]
    euro = next(c for c in listed if c["code"] == "EUR")
    assert (euro["exchange_rate"], euro["enabled"], euro["decimal_places"]) == ("1.165", True, 2)
    return euro["id"], euro["version"]


async def test_a_checkout_in_euros(stack: Stack, session: aiohttp.ClientSession) -> None:
    await euro_id(session, stack)
    first = await variant(session, stack, price="19.99")  # 23.29 EUR
    second = await variant(session, stack, price="5.00")  # 5.83 EUR (5.825 half up)
    discount = await coupon(session, stack, percentage=None, fixed_amount=5)  # 5 GBP off: 5.83 EUR
    shopper = Shopper(session, stack.gateway)

    lines = [{"id": first["id"], "quantity": 2}, {"id": second["id"], "quantity": 1}]
    basket = await shopper.call("POST", "/baskets", "/baskets", json={"variants": lines}, headers=EURO)
    basket_id = basket["data"]["id"]
    assert basket["data"]["currency"] == "EUR"
    path = f"/baskets/{basket_id}/discounts?include=lines,discounts"
    basket = (await shopper.call("POST", path, "/baskets/{id}/discounts", json={"coupon": discount["coupon"]}))["data"]
    # 2 x 23.29 + 5.83 = 52.41 EUR; 5.83 off, spread in proportion: 5.18 and 0.65; tax 20% per
    # line on what is left: 41.40 -> 8.28, 5.18 -> 1.036 -> 1.03.
    assert [line["unit_price"] for line in basket["lines"]["data"]] == [23.29, 5.83]
    assert (basket["currency"], basket["sub_total"], basket["discount_total"]) == ("EUR", 52.41, 5.83)
    assert [line["line_discount"] for line in basket["lines"]["data"]] == [5.18, 0.65]
    assert basket["tax_total"] == 9.31
    assert basket["discounts"]["data"][0]["amount"] == 5.83

    order = (await shopper.call("POST", "/orders", "/orders", json={"basket_id": basket_id}))["data"]
    order_id = order["id"]
    assert order["currency"] == "EUR"
    await shopper.call("PUT", f"/orders/{order_id}/shipping/address", "/orders/{id}/shipping/address", json=UK_ADDRESS)
    prices = (await shopper.call("GET", f"/orders/{order_id}/shipping/methods", "/orders/{id}/shipping/methods"))[
        "data"
    ]
    assert prices and {price["currency"] for price in prices} == {"EUR"}
    price = min((p for p in prices if p["rate"] > 0), key=lambda p: p["rate"])
    await shopper.call(
        "PUT", f"/orders/{order_id}/shipping/cost", "/orders/{id}/shipping/cost", json={"price_id": price["id"]}
    )
    await shopper.call("PUT", f"/orders/{order_id}/contact", "/orders/{id}/contact", json={"email": "eu@example.com"})
    await shopper.call("PUT", f"/orders/{order_id}/billing/address", "/orders/{id}/billing/address", json=UK_ADDRESS)

    status, body = await process(session, stack, order_id, "fake-valid-nonce")
    assert status == 200, body
    placed = await get_order(session, stack, order_id)
    assert (placed["currency"], placed["conversion"]) == ("EUR", "1.165")
    assert (placed["sub_total"], placed["discount_total"]) == (5241 - 583, 583)
    assert placed["tax_total"] == 931 + placed["shipping"]["data"]["tax_total"]
    assert placed["shipping"]["data"]["line_total"] == price["rate"]  # minor units, as upstream
    assert charged(placed) == [placed["order_total"]]
    assert [t["currency"] for t in placed["transactions"]["data"] if t["success"]] == ["EUR"]

    # A rate changed afterwards changes new baskets, never the placed order.
    currency_id, version = await euro_id(session, stack)
    await admin_call(session, stack, "PUT", f"/currencies/{currency_id}", {"exchange_rate": 2, "version": version})
    try:
        async with session.get(f"{stack.gateway}/products/variants/{first['id']}", headers=EURO) as response:
            assert (await response.json())["data"]["price"] == 39.98
        again = await get_order(session, stack, order_id)
        assert (again["conversion"], again["order_total"]) == ("1.165", placed["order_total"])
    finally:
        _, version = await euro_id_any(session, stack)
        await admin_call(
            session, stack, "PUT", f"/currencies/{currency_id}", {"exchange_rate": "1.165", "version": version}
        )

    async with session.get(f"{stack.gateway}/orders/{order_id}/invoice") as response:
        assert response.status == 200
        text = pdf_text(base64.b64decode((await response.json())["data"]["content"]))
    assert f"{placed['order_total'] / 100:.2f} EUR" in text
    assert "1.165" in text


async def euro_id_any(session: aiohttp.ClientSession, stack: Stack) -> tuple[str, Any]:
    """The euro's id and version whatever its rate (the test above changes it)."""
    async with session.get(f"{stack.gateway}/currencies?per_page=100") as response:
        euro = next(c for c in (await response.json())["data"] if c["code"] == "EUR")
    return euro["id"], euro["version"]
