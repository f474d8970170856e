"""Issue 4 through the gateway against the five real processes: basket -> order -> shipping
address -> contact -> billing, re-sync, a placed order that nothing changes any more, and a
basket in euros checked out in euros (issue 18)."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pypdf
import pytest

from gateway.auth import mint_token
from gateway.settings import GatewaySettings
from services.orders.tests.testkit import ADDRESS
from shared import money
from tests.support import Stack

ADMIN = {"Authorization": f"Bearer {mint_token(GatewaySettings())}"}


def minor(value: Any) -> int:
    """The basket's decimal wire amount (12.5) in minor units (1250), exactly."""
    return int(Decimal(str(value)) * 100)


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Any]:
    async with aiohttp.ClientSession() as session:

        async def call(method: str, path: str, body: Any = None, status: int | tuple[int, ...] = 200, **kw: Any) -> Any:
            expected = status if isinstance(status, tuple) else (status,)
            async with session.request(method, stack.gateway + path, json=body, **kw) as response:
                text = await response.text()
                assert response.status in expected, f"{method} {path}: {response.status} {text}"
                return await response.json(content_type=None) if text else None

        yield call


async def variants(api: Any, *prices: str) -> list[str]:
    body = {
        "name": f"Orders flow {uuid.uuid4().hex[:8]}",
        "variants": [
            {"sku": f"ORD-{uuid.uuid4().hex[:10]}", "price": price, "tax_rate_bp": 2000, "inventory": 50}
            for price in prices
        ],
    }
    response = await api("POST", "/products?include=variants", body, status=(200, 201), headers=ADMIN)
    return [variant["id"] for variant in response["data"]["variants"]["data"]]


async def test_the_flow_up_to_payment_through_the_gateway(api: Any) -> None:
    shirt, mug = await variants(api, "12.50", "7.99")
    basket = (await api("POST", "/baskets", {"variants": [{"id": shirt, "quantity": 2}, {"id": mug, "quantity": 1}]}))[
        "data"
    ]
    order = (await api("POST", "/orders", {"basket_id": basket["id"]}))["data"]
    assert order["status"] == "awaiting-payment"
    assert (order["sub_total"], order["tax_total"], order["discount_total"], order["delivery_total"]) == (
        minor(basket["sub_total"]),
        minor(basket["tax_total"]),
        minor(basket["discount_total"]),
        0,
    )
    assert order["sub_total"] == 2500 + 799 and order["tax_total"] == 500 + 159
    assert order["order_total"] == order["sub_total"] + order["tax_total"] == minor(basket["total"])

    order_id = order["id"]
    shipped = (await api("PUT", f"/orders/{order_id}/shipping/address", ADDRESS))["data"]
    assert shipped["shipping_details"]["country"] == "United Kingdom"
    contact = (await api("PUT", f"/orders/{order_id}/contact", {"email": "flow@example.com"}))["data"]
    assert contact["contact_details"]["email"] == "flow@example.com"
    billed = (await api("PUT", f"/orders/{order_id}/billing/address", {**ADDRESS, "country": "GB"}))["data"]
    assert billed["billing_details"]["country"] == "United Kingdom"
    assert billed["order_total"] == order["order_total"]

    full = (await api("GET", f"/orders/{order_id}?include=lines,basket"))["data"]
    assert sorted((line["quantity"], line["unit_price"], line["line_total"]) for line in full["lines"]["data"]) == [
        (1, 799, 799),
        (2, 1250, 2500),
    ]
    assert full["basket"]["data"]["id"] == basket["id"]
    invalid = await api("PUT", f"/orders/{order_id}/contact", {"email": "not-an-email"}, status=422)
    assert list(invalid) == ["email"]
    await api("GET", f"/orders/{uuid.uuid4().hex[:24]}", status=404)


async def test_resync_then_placement_freezes_the_order(api: Any) -> None:
    [variant] = await variants(api, "20.00")
    basket = (await api("POST", "/baskets", {"variants": [{"id": variant, "quantity": 1}]}))["data"]
    first = (await api("POST", "/orders", {"basket_id": basket["id"]}))["data"]
    await api("POST", "/baskets", {"basket_id": basket["id"], "variants": [{"id": variant, "quantity": 3}]})
    synced = (await api("POST", "/orders", {"basket_id": basket["id"]}))["data"]
    assert synced["id"] == first["id"]
    assert (synced["sub_total"], synced["tax_total"], synced["order_total"]) == (6000, 1200, 7200)

    order_id = synced["id"]
    await api("PUT", f"/orders/{order_id}/shipping/address", ADDRESS)
    prices = (await api("GET", f"/orders/{order_id}/shipping/methods"))["data"]
    cheapest = min(prices, key=lambda p: p["rate"])
    costed = (await api("PUT", f"/orders/{order_id}/shipping/cost", {"price_id": cheapest["id"]}))["data"]
    assert costed["delivery_total"] == cheapest["rate"]
    await api("PUT", f"/orders/{order_id}/contact", {"email": "resync@example.com"})
    await api("PUT", f"/orders/{order_id}/billing/address", ADDRESS)
    placed = await api("POST", "/orders/process", {"order_id": order_id, "payment_token": "fake-valid-nonce"})
    assert placed["data"]["status"] == "payment-received"
    before = (await api("GET", f"/orders/{order_id}?include=lines"))["data"]

    # basket marks itself used when it consumes order.placed (eventually): from then on changing
    # it is refused, and the order stays as it was placed whatever happens to the basket
    same = {"basket_id": basket["id"], "variants": [{"id": variant, "quantity": 3}]}
    async with asyncio.timeout(15):
        while True:
            answer = await api("POST", "/baskets", same, status=(200, 403))
            if "error" in answer:
                break
            await asyncio.sleep(0.1)
    assert answer["error"]["http_code"] == 403
    await api("POST", "/baskets", {"basket_id": basket["id"], "variants": [{"id": variant, "quantity": 1}]}, status=403)
    refused = await api("POST", "/orders", {"basket_id": basket["id"]}, status=403)
    assert refused == {"error": {"http_code": 403, "message": "This basket already has an order that has been placed"}}
    assert (await api("GET", f"/orders/{order_id}?include=lines"))["data"] == before

    # admin: a disallowed transition is refused; the listing shows placed orders
    await api("PUT", f"/orders/{order_id}", {"status": "awaiting-payment"}, status=422, headers=ADMIN)
    await api("PUT", f"/orders/{order_id}", {"status": "expired"}, status=401)
    listed = await api("GET", "/orders?status=payment-received&per_page=100", headers=ADMIN)
    assert listed["meta"]["total"] >= 1
    assert all(o["status"] == "payment-received" for o in listed["data"])


async def test_a_basket_in_euros_checks_out_in_euros(api: Any) -> None:
    """The five real services: the catalogue's pounds converted by basket, the order keeping the
    rate, the demo table's euro shipping, the sandbox charging euros, and the invoice saying so."""
    [variant] = await variants(api, "16.66")
    rates = (await api("GET", "/currencies?per_page=100"))["data"]
    rate = Decimal(next(c["exchange_rate"] for c in rates if c["code"] == "EUR"))
    basket = (await api("POST", "/baskets", {"variants": [{"id": variant, "quantity": 2}]}))["data"]
    await api("PUT", f"/baskets/{basket['id']}", {"currency": "EUR"})
    order = (await api("POST", "/orders", {"basket_id": basket["id"]}))["data"]
    unit = money.convert(1666, rate, "GBP", "EUR")  # 19.41 at the demo's 1.165
    assert (order["currency"], Decimal(order["conversion"]), order["sub_total"]) == ("EUR", rate, 2 * unit)
    assert re.fullmatch(r"\d+(\.\d*[1-9])?", order["conversion"])  # no trailing zeros

    order_id = order["id"]
    await api("PUT", f"/orders/{order_id}/shipping/address", ADDRESS)
    prices = (await api("GET", f"/orders/{order_id}/shipping/methods"))["data"]
    assert prices and {p["currency"] for p in prices} == {"EUR"}
    standard = next(p for p in prices if p["method"]["data"]["code"] == "STD")
    assert standard["rate"] == 575  # the demo table's UK standard delivery in euros
    await api("PUT", f"/orders/{order_id}/shipping/cost", {"price_id": standard["id"]})
    await api("PUT", f"/orders/{order_id}/contact", {"email": "euros@example.com"})
    await api("PUT", f"/orders/{order_id}/billing/address", ADDRESS)
    placed = (
        await api(
            "POST", "/orders/process?include=transactions", {"order_id": order_id, "payment_token": "fake-valid-nonce"}
        )
    )["data"]
    assert (placed["status"], placed["currency"], placed["conversion"]) == (
        "payment-received",
        "EUR",
        order["conversion"],
    )
    [tx] = placed["transactions"]["data"]
    assert (tx["amount"], tx["currency"], tx["status"]) == (placed["order_total"], "EUR", "captured")

    invoice = await api("GET", f"/orders/{order_id}/invoice")
    document = pypdf.PdfReader(io.BytesIO(base64.b64decode(invoice["data"]["content"])))
    text = "\n".join(page.extract_text() for page in document.pages)
    assert f"Prices converted from GBP at {order['conversion']} EUR per GBP" in text
    assert f"Total: {money.to_major(placed['order_total'], 'EUR')} EUR" in text
