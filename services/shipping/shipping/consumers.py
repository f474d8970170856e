"""Event subscriptions and request/reply responders of the shipping service."""

from __future__ import annotations

import logging

import asyncpg
from aiohttp import web

from shared import runtime
from shared.bus import HandlerContext, RequestHandler, Subscription
from shared.contracts import OrderPlaced, QuoteShipping, ShipmentOpened, ShippingQuoteReply
from shared.http import new_id
from shipping import domain, queries
from shipping.models import price_contract

log = logging.getLogger(__name__)


async def on_order_placed(ctx: HandlerContext, msg: OrderPlaced) -> None:
    """One shipment per placed order, however many times the placement is announced: one
    statement, announced only if it opened the shipment."""
    address = msg.shipping_address.model_dump() if msg.shipping_address else None
    shipment_id = new_id()
    ctx.write(
        *queries.open_shipment(
            shipment_id, msg.order_id, msg.reference, msg.shipping_method, msg.shipping_price_id, address
        ),
        gate="opened",
    )
    await ctx.emit(ShipmentOpened(shipment_id=shipment_id, order_id=msg.order_id))


SUBSCRIPTIONS = {OrderPlaced.routing_key(): Subscription(OrderPlaced, on_order_placed, transaction=False)}


async def quote(pool: asyncpg.Pool, request: QuoteShipping) -> ShippingQuoteReply:
    country = request.country.strip().upper()
    if len(country) != 2 or not country.isalpha():  # an ISO 3166 alpha-2 code, or no zone at all
        return ShippingQuoteReply(prices=[])
    async with pool.acquire() as conn:
        candidates = await queries.candidates_for_country(conn, country)
    order = domain.Order(country, request.zip, request.sub_total, request.weight_grams, request.currency)
    prices = domain.quote(candidates, order, request.price_id)
    return ShippingQuoteReply(prices=[price_contract(p) for p in prices])


def rpc_handlers(app: web.Application) -> dict[str, RequestHandler]:
    async def on_quote(request: QuoteShipping) -> ShippingQuoteReply:
        return await quote(app[runtime.POOL], request)

    return {QuoteShipping.type: on_quote}
