"""In-test stand-ins for basket, shipping and payments, built on the contracts in shared/contracts.py:
their request/reply answers, and their event queues and publishers (`Peer`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika

from shared import money
from shared.bus import Topology, declare_topology
from shared.contracts import (
    BasketSnapshot,
    BasketSnapshotLine,
    BasketSnapshotReply,
    Contract,
    Envelope,
    GetBasketSnapshot,
    PaymentTypeView,
    QuoteShipping,
    ResolvePayment,
    ResolvePaymentReply,
    ShippingMethodView,
    ShippingPriceView,
    ShippingQuoteReply,
    ShippingZoneView,
    envelope_for,
)
from shared.http import new_id
from tests.support import identity_headers


def admin() -> dict[str, str]:
    return identity_headers()


ADDRESS = {
    "firstname": "Sweet",
    "lastname": "Tooth",
    "address": "Sweet Shop Inc.",
    "address_two": "Pastry Lane",
    "city": "Chelmsford",
    "county": "Essex",
    "zip": "CM2 5TH",
    "country": "United Kingdom",
    "phone": "01245 000000",
}


def line(sku: str, quantity: int, unit_price: int, tax_bp: int = 2000, **extra: Any) -> BasketSnapshotLine:
    line_total = unit_price * quantity
    return BasketSnapshotLine(
        variant_id=extra.pop("variant_id", new_id()),
        product_id=extra.pop("product_id", new_id()),
        sku=sku,
        description=extra.pop("description", f"Product {sku}"),
        option=extra.pop("option", None),
        quantity=quantity,
        unit_price=unit_price,
        unit_qty=1,
        tax_rate_bp=tax_bp,
        line_total=line_total,
        tax_total=money.tax(line_total, tax_bp),
        weight_grams=extra.pop("weight_grams", 500 * quantity),
        **extra,
    )


def snapshot(basket_id: str, lines: list[BasketSnapshotLine], used: bool = False, **currency: Any) -> BasketSnapshot:
    """`currency`: the basket's `currency`, `base_currency` and `exchange_rate` (GBP, the base, by
    default); the lines' amounts are taken as they are, in the basket's currency."""
    sub_total = sum(item.line_total for item in lines)
    tax_total = sum(item.tax_total for item in lines)
    return BasketSnapshot(
        id=basket_id,
        currency=currency.pop("currency", "GBP"),
        used=used,
        sub_total=sub_total,
        tax_total=tax_total,
        discount_total=0,
        total=sub_total + tax_total,
        weight_grams=sum(item.weight_grams for item in lines),
        lines=lines,
        **currency,
    )


@dataclass
class Store:
    """The basket service's answers: baskets by id."""

    baskets: dict[str, BasketSnapshot] = field(default_factory=dict)
    calls: int = 0

    def put(
        self, lines: list[BasketSnapshotLine], basket_id: str | None = None, used: bool = False, **currency: Any
    ) -> str:
        basket_id = basket_id or new_id()
        self.baskets[basket_id] = snapshot(basket_id, lines, used, **currency)
        return basket_id

    async def snapshot(self, request: GetBasketSnapshot) -> BasketSnapshotReply:
        self.calls += 1
        return BasketSnapshotReply(basket=self.baskets.get(request.basket_id))


UK = ShippingZoneView(id=new_id(), name="United Kingdom")
EU = ShippingZoneView(id=new_id(), name="Europe")
STANDARD = ShippingMethodView(id=new_id(), type="standard", name="Standard Delivery", code="STD")
EXPRESS = ShippingMethodView(id=new_id(), type="standard", name="Express Delivery", code="EXP")


@dataclass
class Price:
    view: ShippingPriceView
    countries: frozenset[str]


def _price(
    rate: int, method: ShippingMethodView, zone: ShippingZoneView, min_basket: int = 0, currency: str = "GBP"
) -> ShippingPriceView:
    return ShippingPriceView(
        id=new_id(),
        rate=rate,
        tax=money.tax(rate, money.DEFAULT_TAX_RATE_BP),
        fixed=True,
        min_basket=min_basket,
        min_weight=0,
        currency=currency,
        method=method,
        zone=zone,
    )


@dataclass
class FakeShipping:
    """The shipping service's quote, in the order's currency only: UK standard 5.00 / express 10.00
    (free standard over 100.00), EU 15.00 in GBP; UK standard 5.75 and EU 17.50 in EUR."""

    uk_standard: ShippingPriceView = field(default_factory=lambda: _price(500, STANDARD, UK))
    uk_express: ShippingPriceView = field(default_factory=lambda: _price(1000, EXPRESS, UK))
    uk_free: ShippingPriceView = field(default_factory=lambda: _price(0, STANDARD, UK, min_basket=10_000))
    eu_standard: ShippingPriceView = field(default_factory=lambda: _price(1500, STANDARD, EU))
    uk_standard_eur: ShippingPriceView = field(default_factory=lambda: _price(575, STANDARD, UK, currency="EUR"))
    eu_standard_eur: ShippingPriceView = field(default_factory=lambda: _price(1750, STANDARD, EU, currency="EUR"))
    requests: list[QuoteShipping] = field(default_factory=list)

    def table(self) -> list[Price]:
        uk, eu = frozenset({"GB"}), frozenset({"FR", "DE", "IE"})
        return [
            Price(self.uk_standard, uk),
            Price(self.uk_express, uk),
            Price(self.uk_free, uk),
            Price(self.eu_standard, eu),
            Price(self.uk_standard_eur, uk),
            Price(self.eu_standard_eur, eu),
        ]

    async def quote(self, request: QuoteShipping) -> ShippingQuoteReply:
        self.requests.append(request)
        prices = [
            p.view
            for p in self.table()
            if request.country in p.countries
            and request.currency == p.view.currency
            and request.sub_total >= p.view.min_basket
            and request.weight_grams >= p.view.min_weight
            and (request.price_id is None or request.price_id == p.view.id)
        ]
        return ShippingQuoteReply(prices=prices)


CARD = PaymentTypeView(id=new_id(), name="Card", handle="card", driver="sandbox", success_status="payment-received")
OFFLINE = PaymentTypeView(
    id=new_id(), name="Pay offline", handle="offline", driver="offline", success_status="offline-payment"
)


@dataclass
class Payments:
    """The payments service's resolve: card (sandbox nonces) and offline."""

    calls: int = 0

    async def resolve(self, request: ResolvePayment) -> ResolvePaymentReply:
        self.calls += 1
        ptype = None
        for candidate in (CARD, OFFLINE):
            if request.payment_type_id == candidate.id or request.payment_type == candidate.handle:
                ptype = candidate
        if request.payment_type_id is None and request.payment_type is None:
            ptype = CARD
        if ptype is None:
            return ResolvePaymentReply(errors={"payment_type_id": ["The selected payment type is invalid."]})
        if ptype is CARD and not request.payment_token:
            return ResolvePaymentReply(errors={"payment_token": ["The payment token field is required."]})
        if request.payment_token == "fake-consumed-nonce":
            return ResolvePaymentReply(errors={"payment_token": ["The payment token is invalid."]})
        return ResolvePaymentReply(payment_type=ptype)


class Peer:
    """Another service on the bus: its event queue (what orders sent it) and its publisher."""

    def __init__(self, broker: Any, namespace: str, service: str) -> None:
        self.broker = broker
        self.topology = Topology(namespace, service)
        self.received: asyncio.Queue[Envelope] = asyncio.Queue()
        self.on_event: Callable[[Envelope], Awaitable[None]] | None = None
        self._channel: Any = None
        self._exchange: Any = None

    async def start(self) -> None:
        self._channel = await self.broker.channel()
        queue = await declare_topology(self._channel, self.topology)
        assert queue is not None
        await queue.purge()
        self._exchange = await self._channel.get_exchange(self.topology.events_exchange)
        await queue.consume(self._deliver)

    async def stop(self) -> None:
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def _deliver(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            envelope = Envelope.model_validate_json(message.body)
            await self.received.put(envelope)
            if self.on_event is not None:
                await self.on_event(envelope)

    async def publish(self, payload: Contract, envelope: Envelope | None = None) -> Envelope:
        envelope = envelope or envelope_for(payload, self.topology.service)
        await self._exchange.publish(
            aio_pika.Message(
                envelope.model_dump_json().encode(),
                content_type="application/json",
                message_id=str(envelope.event_id),
                type=envelope.routing_key,
            ),
            routing_key=envelope.routing_key,
        )
        return envelope

    async def next(self, routing_key: str, timeout: float = 10.0) -> Envelope:
        async with asyncio.timeout(timeout):
            while True:
                envelope = await self.received.get()
                if envelope.routing_key == routing_key:
                    return envelope
