"""Event subscriptions and request/reply responders of the payments service."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from aiohttp import web

from payments import domain, queries
from payments.models import transaction_view, type_view
from payments.providers import ChargeResult, InvalidToken, Provider
from payments.resources import PROVIDERS, SIDE_POOL
from shared import runtime
from shared.bus import HandlerContext, PermanentError, RequestHandler, Subscription
from shared.contracts import (
    OrderChargeRequested,
    PaymentCaptured,
    PaymentDeclined,
    ResolvePayment,
    ResolvePaymentReply,
)
from shared.http import new_id

log = logging.getLogger(__name__)


async def find_type(conn: asyncpg.Connection, key: str) -> asyncpg.Record | None:
    """By id, or by handle (some clients send the handle where the id belongs)."""
    if "\x00" in key:  # Postgres text cannot hold NUL: no type has such a key
        return None
    return await queries.type_by_key(conn, key)


class Charger:
    """Charges exactly the requested amount once per checkout attempt.

    The provider call is an external side effect, so it cannot be undone by rolling back the
    handler's transaction. Hence: (1) the intent of the attempt is committed on its own first,
    (2) the provider is called with `idempotency_key = attempt_id`, (3) the result is recorded and
    announced in the handler's transaction, together with the inbox row. A crash or a redelivery
    anywhere re-runs the same steps: the intent is already there, the provider returns the first
    result for the key, and the unique charge per attempt keeps one transaction.
    """

    def __init__(self, side_pool: asyncpg.Pool, providers: dict[str, Provider]) -> None:
        self.side_pool = side_pool
        self.providers = providers

    async def handle(self, ctx: HandlerContext, msg: OrderChargeRequested) -> None:
        conn = ctx.conn
        type_key = None if "\x00" in msg.payment_type_id else msg.payment_type_id  # as `find_type`
        charges, ptype = await queries.charges_and_type(conn, msg.attempt_id, msg.order_id, type_key)
        existing = next((row for row in charges if row["attempt_id"] == msg.attempt_id), None)
        if existing is not None:
            # Orders asked again for an attempt already settled (a resumed saga): the same answer.
            ptype = await queries.type_by_id(conn, existing["payment_type_id"])
            await self.announce(ctx, existing, ptype["success_status"] if ptype else "")
            return
        if ptype is None or not ptype["enabled"]:
            await self.decline(ctx, msg, domain.UNKNOWN_TYPE)
            return
        provider = self.providers.get(ptype["driver"])
        if provider is None:
            raise PermanentError(f"no provider for driver {ptype['driver']!r}")
        if any(row["order_id"] == msg.order_id and row["status"] == domain.CAPTURED for row in charges):
            await self.decline(ctx, msg, domain.ALREADY_PAID)
            return

        async with self.side_pool.acquire() as side:
            intent = await queries.record_intent(
                side, msg.attempt_id, msg.order_id, msg.amount, msg.currency, ptype["id"]
            )
        amount, currency = intent["amount"], intent["currency"]
        if (amount, currency, intent["payment_type_id"]) != (msg.amount, msg.currency, ptype["id"]):
            # The key already stands for the first request; charging it again means the first one.
            log.warning(
                "charge request differs from its attempt's recorded intent; the intent wins",
                extra={"order_id": msg.order_id, "attempt_id": str(msg.attempt_id)},
            )
            if intent["payment_type_id"] != ptype["id"]:
                ptype = await queries.type_by_id(conn, intent["payment_type_id"])
                provider = self.providers[ptype["driver"]]

        try:
            result = await provider.charge(amount, currency, msg.payment_token, idempotency_key=str(msg.attempt_id))
        except InvalidToken as exc:
            result = ChargeResult(False, "", domain.DECLINED, message=str(exc))
        # Any other failure propagates: the event is retried with backoff, with the same key.

        values: dict[str, Any] = {
            "id": new_id(),
            "order_id": msg.order_id,
            "attempt_id": msg.attempt_id,
            "kind": "charge",
            "amount": amount,
            "currency": currency,
            "payment_type_id": ptype["id"],
            "provider": provider.name,
            "driver": provider.driver,
            "transaction_id": result.reference,
            "merchant": provider.merchant,
            "status": domain.CAPTURED if result.success else domain.DECLINED,
            "success": result.success,
            "card_type": result.card_type,
            "last_four": result.last_four,
            "notes": msg.notes,
            "message": result.message,
        }
        row = await queries.insert_transaction_if_new(conn, values)
        if row is None:
            if await queries.charge_for_attempt(conn, msg.attempt_id) is not None:
                # A concurrent delivery of this attempt recorded and announced the same result.
                return
            # Another attempt captured this order at the same moment: undo ours at the provider.
            voided = await provider.void(result.reference)
            log.error(
                "second capture for one order reversed",
                extra={"order_id": msg.order_id, "attempt_id": str(msg.attempt_id), "voided": voided.success},
            )
            values |= {"status": domain.VOIDED, "success": False, "message": domain.ALREADY_PAID}
            row = await queries.insert_transaction(conn, values)
        await self.announce(ctx, row, ptype["success_status"])

    async def decline(self, ctx: HandlerContext, msg: OrderChargeRequested, reason: str) -> None:
        """Declined without asking the provider (nothing charged, no transaction)."""
        await ctx.emit(PaymentDeclined(order_id=msg.order_id, attempt_id=msg.attempt_id, reason=reason))

    async def announce(self, ctx: HandlerContext, row: asyncpg.Record, success_status: str) -> None:
        view = transaction_view(row)
        if row["success"]:
            await ctx.emit(
                PaymentCaptured(
                    order_id=row["order_id"],
                    attempt_id=row["attempt_id"],
                    success_status=success_status,
                    transaction=view,
                )
            )
        else:
            await ctx.emit(
                PaymentDeclined(
                    order_id=row["order_id"],
                    attempt_id=row["attempt_id"],
                    reason=row["message"] or "Payment declined",
                    transaction=view,
                )
            )


def subscriptions(app: web.Application) -> dict[str, Subscription]:
    async def on_charge_requested(ctx: HandlerContext, msg: OrderChargeRequested) -> None:
        await Charger(app[SIDE_POOL], app[PROVIDERS]).handle(ctx, msg)

    return {OrderChargeRequested.routing_key(): Subscription(OrderChargeRequested, on_charge_requested)}


async def resolve_payment(
    pool: asyncpg.Pool, providers: dict[str, Provider], request: ResolvePayment
) -> ResolvePaymentReply:
    """The payment type of a checkout (default: card) and whether its token may be charged."""
    field = "payment_type" if request.payment_type and not request.payment_type_id else "payment_type_id"
    async with pool.acquire() as conn:
        if request.payment_type_id:
            row = await find_type(conn, request.payment_type_id)
        else:
            row = await find_type(conn, request.payment_type or domain.DEFAULT_TYPE_HANDLE)
    if row is None or not row["enabled"] or row["driver"] not in providers:
        return ResolvePaymentReply(errors={field: [domain.UNKNOWN_TYPE]})
    error = await providers[row["driver"]].validate_token(request.payment_token)
    if error is not None:
        return ResolvePaymentReply(payment_type=type_view(row), errors={"payment_token": [error]})
    return ResolvePaymentReply(payment_type=type_view(row))


def rpc_handlers(app: web.Application) -> dict[str, RequestHandler]:
    async def on_resolve(request: ResolvePayment) -> ResolvePaymentReply:
        return await resolve_payment(app[runtime.POOL], app[PROVIDERS], request)

    return {ResolvePayment.type: on_resolve}
