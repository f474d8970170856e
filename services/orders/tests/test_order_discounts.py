"""Discounts on the orders side: the basket's discounts become the order's (lines, totals, the
`discounts` relation), free shipping waives the shipping line, and the checkout asks basket to
reserve their uses, charges the discounted total, and answers basket's refusal as a 422."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from orders import domain
from orders.invoices import build_invoice
from services.orders.tests.testkit import ADDRESS, FakeShipping, Peer, Store, line, snapshot
from shared import money
from shared.contracts import (
    BasketSnapshot,
    Contract,
    DiscountUse,
    Envelope,
    OrderChargeRequested,
    OrderStockRequested,
    PaymentCaptured,
    StockRefused,
    StockReserved,
    TransactionView,
)
from shared.http import new_id

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

URL = "/api/v1/orders"


def test_free_shipping_keeps_the_rate_as_the_line_total_and_waives_all_of_it() -> None:
    paid = domain.shipping_line("Standard", "STD", "UK", 499)
    free = domain.shipping_line("Standard", "STD", "UK", 499, free=True)
    assert (paid.line_total, paid.discount_total, paid.tax_total) == (499, 0, 99)
    assert (free.unit_price, free.line_total, free.discount_total, free.tax_total) == (499, 499, 499, 0)
    totals = domain.totals(
        [
            domain.LineAmounts(line_total=2000, tax_total=360, discount_total=200, is_shipping=False),
            domain.LineAmounts(free.line_total, free.tax_total, free.discount_total, is_shipping=True),
        ]
    )
    assert totals == domain.Totals(
        sub_total=1800, delivery_total=0, discount_total=200, tax_total=360, order_total=2160
    )


def test_an_invoice_shows_lines_after_their_discounts() -> None:
    rows = [
        {
            "description": "Shirt",
            "option": None,
            "quantity": 2,
            "unit_price": 1000,
            "line_total": 2000,
            "tax_total": 360,
            "tax_rate": 2000,
            "discount_total": 200,
            "is_shipping": False,
        },
        {
            "description": "Standard",
            "option": None,
            "quantity": 1,
            "unit_price": 499,
            "line_total": 499,
            "tax_total": 0,
            "tax_rate": 2000,
            "discount_total": 499,
            "is_shipping": True,
        },
    ]
    order = {
        "invoice_reference": "#INV-1",
        "reference": "1",
        "placed_at": datetime.now(UTC),
        "currency": "GBP",
        "base_currency": "GBP",
        "conversion": Decimal(1),
        "billing_details": ADDRESS,
        "shipping_details": ADDRESS,
        "sub_total": 1800,
        "discount_total": 200,
        "delivery_total": 0,
        "tax_total": 360,
        "order_total": 2160,
    }
    invoice = build_invoice(order, rows)
    assert [line.net for line in invoice.lines] == [1800]
    assert invoice.shipping is not None and invoice.shipping.net == 0
    # The tax band's net is what the tax was computed on.
    assert [(band.net, band.tax) for band in invoice.taxes] == [(1800, 360)]


COUPON = DiscountUse(discount_id=new_id(), name="Spring", coupon="SPRING", amount=250, free_shipping=True)


def discounted(basket_id: str) -> BasketSnapshot:
    """Two lines, 10% off the first (250) with free shipping, tax on what is left."""
    first = line("A", 2, 1250).model_copy(update={"discount_total": 250, "tax_total": money.tax(2250, 2000)})
    second = line("B", 1, 999, tax_bp=0)
    plain = snapshot(basket_id, [first, second])
    return plain.model_copy(
        update={
            "discount_total": 250,
            "total": plain.sub_total - 250 + plain.tax_total,
            "discounts": [COUPON],
            "free_shipping": True,
        }
    )


async def discounted_order(client: Any, store: Store, shipping: FakeShipping) -> tuple[str, dict[str, Any]]:
    basket_id = new_id()
    store.baskets[basket_id] = discounted(basket_id)
    response = await client.post(URL, json={"basket_id": basket_id, "include": "discounts"})
    assert response.status == 200, await response.text()
    order = (await response.json())["data"]
    for path, body in (
        ("shipping/address", ADDRESS),
        ("shipping/cost", {"price_id": shipping.uk_standard.id}),
        ("billing/address", ADDRESS),
        ("contact", {"email": "sweets@example.com"}),
    ):
        response = await client.put(f"{URL}/{order['id']}/{path}", json=body)
        assert response.status == 200, await response.text()
    return basket_id, order


async def test_the_basket_discounts_become_the_orders(client: Any, store: Store, shipping: FakeShipping) -> None:
    basket_id, created = await discounted_order(client, store, shipping)
    assert created["discounts"]["data"] == [
        {"id": COUPON.discount_id, "name": "Spring", "coupon": "SPRING", "amount": 250, "free_shipping": True}
    ]
    response = await client.get(f"{URL}/{created['id']}?include=lines,shipping,discounts")
    order = (await response.json())["data"]
    goods_tax = 450 + 0
    assert (order["sub_total"], order["discount_total"], order["delivery_total"], order["tax_total"]) == (
        2500 + 999 - 250,
        250,
        0,
        goods_tax,
    )
    assert order["order_total"] == 2500 + 999 - 250 + goods_tax
    assert [(li["sku"], li["line_total"], li["discount_total"]) for li in order["lines"]["data"]] == [
        ("A", 2500, 250),
        ("B", 999, 0),
        ("STD", 500, 500),
    ]
    assert (order["shipping"]["data"]["line_total"], order["shipping"]["data"]["tax_total"]) == (500, 0)

    # The coupon removed from the basket: the order follows it when it is synced again.
    store.put([line("A", 2, 1250), line("B", 1, 999, tax_bp=0)], basket_id=basket_id)
    response = await client.post(URL, json={"basket_id": basket_id, "include": "discounts,shipping"})
    synced = (await response.json())["data"]
    assert synced["discounts"]["data"] == [] and synced["discount_total"] == 0
    assert (synced["delivery_total"], synced["shipping"]["data"]["discount_total"]) == (500, 0)
    assert synced["order_total"] == 2500 + 999 + 500 + 500 + 100


class Basket:
    """Basket's side of the saga: reserves, or refuses the coupon."""

    def __init__(self, peers: dict[str, Peer], refuse: dict[str, list[str]] | None = None) -> None:
        self.basket, self.payments = peers["basket"], peers["payments"]
        self.refuse = refuse
        self.requests: list[OrderStockRequested] = []
        self.charges: list[OrderChargeRequested] = []
        self.basket.on_event = self.on_basket
        self.payments.on_event = self.on_payments

    async def on_basket(self, envelope: Envelope) -> None:
        if envelope.routing_key != OrderStockRequested.routing_key():
            return
        request = OrderStockRequested.model_validate(envelope.payload)
        self.requests.append(request)
        reply: Contract
        if self.refuse:
            reply = StockRefused(order_id=request.order_id, attempt_id=request.attempt_id, errors=self.refuse)
        else:
            expires = datetime.now(UTC) + timedelta(minutes=15)
            reply = StockReserved(
                order_id=request.order_id, attempt_id=request.attempt_id, reservation_id=new_id(), expires_at=expires
            )
        await self.basket.publish(reply)

    async def on_payments(self, envelope: Envelope) -> None:
        if envelope.routing_key != OrderChargeRequested.routing_key():
            return
        charge = OrderChargeRequested.model_validate(envelope.payload)
        self.charges.append(charge)
        transaction = TransactionView(
            id=new_id(),
            order_id=charge.order_id,
            transaction_id=f"sandbox_{new_id()}",
            merchant="commerce",
            amount=charge.amount,
            currency=charge.currency,
            provider="Sandbox",
            driver="sandbox",
            success=True,
            refund=False,
            status="captured",
            created_at=datetime.now(UTC),
        )
        await self.payments.publish(
            PaymentCaptured(
                order_id=charge.order_id,
                attempt_id=charge.attempt_id,
                success_status="payment-received",
                transaction=transaction,
            )
        )


async def test_the_checkout_reserves_the_uses_and_charges_the_discounted_total(
    client: Any, store: Store, shipping: FakeShipping, peers: dict[str, Peer]
) -> None:
    saga = Basket(peers)
    _, order = await discounted_order(client, store, shipping)
    response = await client.post(
        f"{URL}/process?include=discounts", json={"order_id": order["id"], "payment_token": "fake-valid-nonce"}
    )
    assert response.status == 200, await response.text()
    placed = (await response.json())["data"]
    [request] = saga.requests
    assert (request.discounts, request.email) == ([COUPON], "sweets@example.com")
    [charge] = saga.charges
    assert charge.amount == placed["order_total"] == 2500 + 999 - 250 + 450
    assert [tx["amount"] for tx in placed["transactions"]["data"]] == [charge.amount]
    assert placed["discounts"]["data"][0]["coupon"] == "SPRING"


async def test_a_refused_coupon_fails_the_attempt_with_a_422(
    client: Any, store: Store, shipping: FakeShipping, peers: dict[str, Peer]
) -> None:
    refusal = {"coupon": ["This coupon has reached its usage limit."]}
    saga = Basket(peers, refuse=refusal)
    _, order = await discounted_order(client, store, shipping)
    response = await client.post(f"{URL}/process", json={"order_id": order["id"], "payment_token": "fake-valid-nonce"})
    assert (response.status, await response.json()) == (422, refusal)
    assert saga.charges == []
    await asyncio.sleep(0.1)
    response = await client.get(f"{URL}/{order['id']}")
    assert (await response.json())["data"]["status"] == "failed"
