"""Event subscriptions and request/reply responders of the shipping service."""

from __future__ import annotations

from aiohttp import web

from shared import runtime
from shared.bus import Responder, Subscription
from shared.contracts import OrderPlaced, OrderStatusChanged, QuoteShipping, ShipmentOpened, ShippingQuoteReply
from shared.http import new_id
from shared.uow import UnitOfWork
from shipping import domain, queries
from shipping.views import price_contract

# An unpaid order's placement and its payment are handled under the order's lock
# (`queries.lock_order`), one after the other, whichever announcement comes first.


async def on_order_placed(uow: UnitOfWork, event: OrderPlaced) -> None:
    """One shipment per placed order, however many times the placement is announced: announced
    only by the copy that opened it. An unpaid order's shipment is held, and not announced."""
    paid = event.paid
    if not paid:  # the order's payment may have been announced first
        await queries.lock_order(uow.conn, event.order_id)
        paid = await queries.is_paid(uow.conn, event.order_id)
    status = domain.first_status(paid)
    address = event.shipping_address.model_dump() if event.shipping_address else None
    shipment_id = await queries.open_shipment(
        uow.conn,
        new_id(),
        event.order_id,
        event.reference,
        event.shipping_method,
        event.shipping_price_id,
        address,
        status,
    )
    if shipment_id is not None and status == domain.OPEN:
        uow.emit(ShipmentOpened(shipment_id=shipment_id, order_id=event.order_id))


async def on_order_status_changed(uow: UnitOfWork, event: OrderStatusChanged) -> None:
    """An order marked paid: its held shipment opens, announced once however many times the
    payment is announced. Any other status change is not shipping's business."""
    if not event.marks_paid:
        return
    await queries.lock_order(uow.conn, event.order_id)
    await queries.record_paid(uow.conn, event.order_id)
    shipment_id = await queries.release_held(uow.conn, event.order_id)
    if shipment_id is not None:
        uow.emit(ShipmentOpened(shipment_id=shipment_id, order_id=event.order_id))


def subscriptions(app: web.Application) -> list[Subscription]:
    return [Subscription(OrderPlaced, on_order_placed), Subscription(OrderStatusChanged, on_order_status_changed)]


def responders(app: web.Application) -> list[Responder]:
    async def on_quote_shipping(request: QuoteShipping) -> ShippingQuoteReply:
        country = request.country.strip().upper()
        if len(country) != 2 or not country.isalpha():  # an ISO 3166 alpha-2 code, or no zone at all
            return ShippingQuoteReply(prices=[])
        async with app[runtime.POOL].acquire() as conn:
            candidates = await queries.candidates_for_country(conn, country)
        order = domain.Order(country, request.zip, request.sub_total, request.weight_grams, request.currency)
        prices = domain.quote(candidates, order, request.price_id)
        return ShippingQuoteReply(prices=[price_contract(price) for price in prices])

    return [Responder(QuoteShipping, on_quote_shipping)]
