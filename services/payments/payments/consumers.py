"""Event subscriptions and request/reply responders of the payments service."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from aiohttp import web

from payments import domain, queries
from payments.providers import PROVIDERS, SIDE_POOL, ChargeResult, InvalidToken, Provider
from payments.views import transaction_view, type_view
from shared import runtime
from shared.bus import PermanentError, Responder, Subscription
from shared.contracts import (
    OrderChargeRequested,
    PaymentCaptured,
    PaymentDeclined,
    ResolvePayment,
    ResolvePaymentReply,
)
from shared.http import new_id
from shared.uow import UnitOfWork

log = logging.getLogger(__name__)


async def find_type(conn: asyncpg.Connection, key: str) -> asyncpg.Record | None:
    """By id, or by handle (some clients send the handle where the id belongs)."""
    if "\x00" in key:  # Postgres text cannot hold NUL: no type has such a key
        return None
    return await queries.type_by_key(conn, key)


class Charger:
    """Charges exactly the requested amount once per checkout attempt, and an order once ever.

    The provider call is an external side effect that no rollback undoes. So (1) the intent of
    the attempt (amount, currency, type) is committed on its own first, through the side pool;
    (2) the provider is called with `idempotency_key = attempt_id`; (3) the result is recorded and
    announced in the unit of work. A crash or a redelivery anywhere runs the same steps again: the
    intent is there already, and the provider answers the first result for the key without
    charging again.

    The unit of work holds the order's lock from its start: charge requests of one order (a twin
    of an attempt, another attempt) run one after the other, so each finds what the one before it
    recorded. The unique indexes (one charge per attempt, one live capture per order) stay as the
    last word: should one refuse a record, the unit of work rolls back and the bus retries.
    """

    def __init__(self, side_pool: asyncpg.Pool, providers: dict[str, Provider]) -> None:
        self.side_pool = side_pool
        self.providers = providers

    async def on_order_charge_requested(self, uow: UnitOfWork, event: OrderChargeRequested) -> None:
        conn = uow.conn
        await queries.lock_order_charges(conn, event.order_id)
        charges = await queries.charges_of(conn, event.attempt_id, event.order_id)
        settled = next((row for row in charges if row["attempt_id"] == event.attempt_id), None)
        if settled is not None:
            # Orders asked again for an attempt already settled (a resumed saga): the same answer.
            ptype = await queries.type_by_id(conn, settled["payment_type_id"])
            announce(uow, settled, ptype["success_status"] if ptype else "")
            return
        ptype = await find_type(conn, event.payment_type_id)
        if ptype is None or not ptype["enabled"]:
            decline(uow, event, domain.UNKNOWN_TYPE)
            return
        provider = self.providers.get(ptype["driver"])
        if provider is None:
            raise PermanentError(f"no provider for driver {ptype['driver']!r}")
        if any(row["status"] == domain.CAPTURED for row in charges):  # another attempt's
            await self.refuse_second_capture(uow, event)
            return

        async with self.side_pool.acquire() as side:
            intent = await queries.record_intent(
                side, event.attempt_id, event.order_id, event.amount, event.currency, ptype["id"]
            )
        if (intent["amount"], intent["currency"], intent["payment_type_id"]) != (
            event.amount,
            event.currency,
            ptype["id"],
        ):
            # The key already stands for the first request; charging it again means the first one.
            log.warning(
                "charge request differs from its attempt's recorded intent; the intent wins",
                extra={"order_id": event.order_id, "attempt_id": str(event.attempt_id)},
            )
            if intent["payment_type_id"] != ptype["id"]:
                ptype = await queries.type_by_id(conn, intent["payment_type_id"])
                provider = self.providers[ptype["driver"]]

        result = await self.charge(provider, intent, event)
        row = await queries.insert_transaction(conn, transaction_values(event, intent, ptype["id"], provider, result))
        announce(uow, row, ptype["success_status"])

    async def charge(self, provider: Provider, intent: asyncpg.Record, event: OrderChargeRequested) -> ChargeResult:
        try:
            return await provider.charge(
                intent["amount"], intent["currency"], event.payment_token, idempotency_key=str(event.attempt_id)
            )
        except InvalidToken as exc:
            return ChargeResult(False, "", domain.DECLINED, message=str(exc))
        # Any other failure propagates: the event is retried with backoff, with the same key.

    async def refuse_second_capture(self, uow: UnitOfWork, event: OrderChargeRequested) -> None:
        """Another attempt captured the order. If this attempt got as far as its intent, the
        provider may have charged it (before a crash, with the other capture recorded since): its
        result is asked again (same key, so no new charge) and a success is voided."""
        async with self.side_pool.acquire() as side:
            intent = await queries.intent_of(side, event.attempt_id)
        if intent is None:
            decline(uow, event, domain.ALREADY_PAID)
            return
        ptype = await queries.type_by_id(uow.conn, intent["payment_type_id"])
        provider = self.providers[ptype["driver"]]
        result = await self.charge(provider, intent, event)
        if not result.success:
            decline(uow, event, domain.ALREADY_PAID)
            return
        voided = await provider.void(result.reference)
        log.error(
            "second capture for one order reversed",
            extra={"order_id": event.order_id, "attempt_id": str(event.attempt_id), "voided": voided.success},
        )
        values = transaction_values(event, intent, ptype["id"], provider, result)
        values |= {"status": domain.VOIDED, "success": False, "message": domain.ALREADY_PAID}
        row = await queries.insert_transaction(uow.conn, values)
        announce(uow, row, ptype["success_status"])


def transaction_values(
    event: OrderChargeRequested, intent: asyncpg.Record, type_id: str, provider: Provider, result: ChargeResult
) -> dict[str, Any]:
    """The charge's ledger row (the token is not in it: it is never stored)."""
    return {
        "id": new_id(),
        "order_id": event.order_id,
        "attempt_id": event.attempt_id,
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
        "notes": event.notes,
        "message": result.message,
    }


def decline(uow: UnitOfWork, event: OrderChargeRequested, reason: str) -> None:
    """Declined without asking the provider (nothing charged, no transaction)."""
    uow.emit(PaymentDeclined(order_id=event.order_id, attempt_id=event.attempt_id, reason=reason))


def announce(uow: UnitOfWork, row: asyncpg.Record, success_status: str) -> None:
    view = transaction_view(row)
    if row["success"]:
        uow.emit(
            PaymentCaptured(
                order_id=row["order_id"],
                attempt_id=row["attempt_id"],
                success_status=success_status,
                transaction=view,
            )
        )
    else:
        uow.emit(
            PaymentDeclined(
                order_id=row["order_id"],
                attempt_id=row["attempt_id"],
                reason=row["message"] or "Payment declined",
                transaction=view,
            )
        )


def subscriptions(app: web.Application) -> list[Subscription]:
    charger = Charger(app[SIDE_POOL], app[PROVIDERS])
    return [Subscription(OrderChargeRequested, charger.on_order_charge_requested)]


def responders(app: web.Application) -> list[Responder]:
    async def on_resolve_payment(request: ResolvePayment) -> ResolvePaymentReply:
        """The payment type of a checkout (default: card) and whether its token may be charged."""
        providers = app[PROVIDERS]
        field = "payment_type" if request.payment_type and not request.payment_type_id else "payment_type_id"
        key = request.payment_type_id or request.payment_type or domain.DEFAULT_TYPE_HANDLE
        async with app[runtime.POOL].acquire() as conn:
            row = await find_type(conn, key)
        if row is None or not row["enabled"] or row["driver"] not in providers:
            return ResolvePaymentReply(errors={field: [domain.UNKNOWN_TYPE]})
        error = await providers[row["driver"]].validate_token(request.payment_token)
        if error is not None:
            return ResolvePaymentReply(payment_type=type_view(row), errors={"payment_token": [error]})
        return ResolvePaymentReply(payment_type=type_view(row))

    return [Responder(ResolvePayment, on_resolve_payment)]
