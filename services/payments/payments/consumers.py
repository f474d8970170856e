"""Event subscriptions and request/reply responders of the payments service."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
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

    The provider call is an external side effect, so it cannot be undone by rolling anything back.
    Hence: (1) the intent of the attempt is committed on its own first, (2) the provider is called
    with `idempotency_key = attempt_id`, (3) the result is recorded and announced in one statement
    with the inbox row (the handler opens no transaction: it reads, and that statement is its one
    write). A crash or a redelivery anywhere re-runs the same steps: the intent is already there,
    the provider returns the first result for the key, and the unique charge per attempt keeps one
    transaction. When a unique index refuses the record (a twin of this attempt recorded it, or
    another attempt captured the order meanwhile), the statement fails as a whole and the event
    is retried: the next run finds which, and answers or undoes accordingly.
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
            await self.refuse_second_capture(ctx, msg)
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

        result = await self.charge(provider, intent, msg)
        values = self.transaction_values(msg, intent, ptype["id"], provider, result)
        ctx.write(*queries.record_transaction(values), gate="recorded", required=True)
        await self.announce(ctx, values, ptype["success_status"])

    async def charge(self, provider: Provider, intent: Any, msg: OrderChargeRequested) -> ChargeResult:
        try:
            return await provider.charge(
                intent["amount"], intent["currency"], msg.payment_token, idempotency_key=str(msg.attempt_id)
            )
        except InvalidToken as exc:
            return ChargeResult(False, "", domain.DECLINED, message=str(exc))
        # Any other failure propagates: the event is retried with backoff, with the same key.

    @staticmethod
    def transaction_values(
        msg: OrderChargeRequested, intent: Any, type_id: str, provider: Provider, result: ChargeResult
    ) -> dict[str, Any]:
        return {
            "id": new_id(),
            "order_id": msg.order_id,
            "attempt_id": msg.attempt_id,
            "kind": "charge",
            "amount": intent["amount"],
            "currency": intent["currency"],
            "payment_type_id": type_id,
            "provider": provider.name,
            "driver": provider.driver,
            "transaction_id": result.reference,
            "merchant": provider.merchant,
            "status": domain.CAPTURED if result.success else domain.DECLINED,
            "success": result.success,
            "refund": False,
            "card_type": result.card_type,
            "last_four": result.last_four,
            "notes": msg.notes,
            "message": result.message,
            "created_at": datetime.now(UTC),
        }

    async def refuse_second_capture(self, ctx: HandlerContext, msg: OrderChargeRequested) -> None:
        """Another attempt captured the order. If this attempt got as far as its intent, the
        provider may have charged it (before the other capture was recorded, or before a crash):
        its result is asked again (same key, so no new charge) and a success is voided."""
        async with self.side_pool.acquire() as side:
            intent = await queries.intent_of(side, msg.attempt_id)
        if intent is None:
            await self.decline(ctx, msg, domain.ALREADY_PAID)
            return
        ptype = await queries.type_by_id(ctx.conn, intent["payment_type_id"])
        provider = self.providers[ptype["driver"]]
        result = await self.charge(provider, intent, msg)
        if not result.success:
            await self.decline(ctx, msg, domain.ALREADY_PAID)
            return
        voided = await provider.void(result.reference)
        log.error(
            "second capture for one order reversed",
            extra={"order_id": msg.order_id, "attempt_id": str(msg.attempt_id), "voided": voided.success},
        )
        values = self.transaction_values(msg, intent, ptype["id"], provider, result)
        values |= {"status": domain.VOIDED, "success": False, "message": domain.ALREADY_PAID}
        ctx.write(*queries.record_transaction(values), gate="recorded", required=True)
        await self.announce(ctx, values, ptype["success_status"])

    async def decline(self, ctx: HandlerContext, msg: OrderChargeRequested, reason: str) -> None:
        """Declined without asking the provider (nothing charged, no transaction)."""
        await ctx.emit(PaymentDeclined(order_id=msg.order_id, attempt_id=msg.attempt_id, reason=reason))

    async def announce(self, ctx: HandlerContext, row: Mapping[str, Any], success_status: str) -> None:
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

    return {
        OrderChargeRequested.routing_key(): Subscription(OrderChargeRequested, on_charge_requested, transaction=False)
    }


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
