"""Event subscriptions and request/reply responders of the payments service."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from aiohttp import web

from payments import domain, queries
from payments.providers import PROVIDERS, SIDE_POOL, ChargeResult, InvalidToken, Provider, answer
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
    (2) the provider is called with `idempotency_key = attempt_id`, bounded by its timeout; (3) the
    result is checked, recorded and announced in the unit of work (`settle`). A crash or a
    redelivery anywhere runs the same steps again: the intent is there already, and the provider
    answers the first result for the key without charging again. A provider that times out or
    fails on its side raises `ProviderError`, which the bus retries for as long as it lasts; an
    attempt left without a result meanwhile is settled by the sweeper (`sweepers.py`).

    The unit of work holds the order's lock from its start: charge requests of one order (a twin
    of an attempt, another attempt, the sweeper) run one after the other, so each finds what the
    one before it recorded. The unique indexes (one charge per attempt, one live capture per
    order) stay as the last word: should one refuse a record, the unit of work rolls back and the
    bus retries.
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
            # Orders asked again for an attempt already settled (a resumed saga, a charge request
            # retried past an outage the sweeper settled): the same answer, nothing charged.
            ptype = await queries.type_by_id(conn, settled["payment_type_id"])
            announce(uow, settled, ptype)
            return
        order_paid = any(row["status"] == domain.CAPTURED for row in charges)  # by another attempt
        ptype = await find_type(conn, event.payment_type_id)
        if order_paid or ptype is None or not ptype["enabled"]:
            # Nothing may be charged now. But if this attempt recorded its intent before, it may
            # have reached the provider (then crashed, or its answer was lost): what became of it
            # is asked by its key, never charged anew, and settled (a capture is voided).
            async with self.side_pool.acquire() as side:
                intent = await queries.intent_of(side, event.attempt_id)
            if intent is None:
                decline(uow, event, domain.ALREADY_PAID if order_paid else domain.UNKNOWN_TYPE)
                return
            ptype = await queries.type_by_id(conn, intent["payment_type_id"])
            provider = provider_for(self.providers, ptype)
            result = await answer(provider, provider.lookup(str(event.attempt_id)))
        else:
            provider = provider_for(self.providers, ptype)
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
                    provider = provider_for(self.providers, ptype)
            result = await self.charge(provider, intent, event.payment_token)
        await settle(uow, intent, ptype, provider, result, order_paid=order_paid, notes=event.notes)

    async def charge(self, provider: Provider, intent: asyncpg.Record, token: str | None) -> ChargeResult:
        try:
            return await answer(
                provider,
                provider.charge(intent["amount"], intent["currency"], token, idempotency_key=str(intent["attempt_id"])),
            )
        except InvalidToken as exc:
            return ChargeResult(False, "", domain.DECLINED, None, None, message=str(exc))
        # A ProviderError propagates: the event is retried with backoff, with the same key.


def provider_for(providers: dict[str, Provider], ptype: asyncpg.Record) -> Provider:
    provider = providers.get(ptype["driver"])
    if provider is None:
        raise PermanentError(f"no provider for driver {ptype['driver']!r}")
    return provider


async def settle(
    uow: UnitOfWork,
    intent: asyncpg.Record,
    ptype: asyncpg.Record,
    provider: Provider,
    result: ChargeResult | None,
    *,
    order_paid: bool,
    notes: str | None = None,
) -> None:
    """Record and announce what the provider's `result` for the attempt's key (None: it has none)
    makes of the attempt (`domain.settle`), with the order's lock held. A capture that cannot
    stand (the order was paid by another attempt; not the amount or currency the intent asked
    for) is voided at the provider first, and the attempt fails."""
    captured = (result.amount, result.currency) if result is not None and provider.moves_money else None
    outcome = domain.settle(
        None if result is None else result.success,
        None if result is None else result.message,
        expected=(intent["amount"], intent["currency"]),
        captured=captured,
        order_paid=order_paid,
    )
    if outcome.void:
        assert result is not None
        voided = await answer(provider, provider.void(result.reference))
        # Money moved that must not have: whoever watches the errors should know, even reversed.
        log.error(
            "capture voided" if voided.success else "capture could not be voided: reverse it by hand",
            extra={
                "order_id": intent["order_id"],
                "attempt_id": str(intent["attempt_id"]),
                "reason": outcome.message,
                "provider_message": voided.message,
            },
        )
    values = transaction_values(intent, ptype["id"], provider, result, outcome, notes)
    row = await queries.insert_transaction(uow.conn, values)
    await queries.mark_intent_settled(uow.conn, intent["attempt_id"])
    announce(uow, row, ptype)


def transaction_values(
    intent: asyncpg.Record,
    type_id: str,
    provider: Provider,
    result: ChargeResult | None,
    outcome: domain.Settlement,
    notes: str | None,
) -> dict[str, Any]:
    """The charge's ledger row (the token is not in it: it is never stored). Its amount and
    currency are the provider's when it reports them (a voided wrong capture shows what was
    captured), else the intent's."""
    reported = result is not None and result.amount is not None and result.currency is not None
    return {
        "id": new_id(),
        "order_id": intent["order_id"],
        "attempt_id": intent["attempt_id"],
        "kind": "charge",
        "amount": result.amount if reported else intent["amount"],
        "currency": result.currency if reported else intent["currency"],
        "payment_type_id": type_id,
        "provider": provider.name,
        "driver": provider.driver,
        "transaction_id": result.reference if result is not None else "",
        "merchant": provider.merchant,
        "status": outcome.status,
        "success": outcome.status == domain.CAPTURED,
        "refund": False,
        "card_type": result.card_type if result is not None else None,
        "last_four": result.last_four if result is not None else None,
        "notes": notes,
        "message": outcome.message,
    }


def decline(uow: UnitOfWork, event: OrderChargeRequested, reason: str) -> None:
    """Declined without asking the provider (nothing charged, no transaction)."""
    uow.emit(PaymentDeclined(order_id=event.order_id, attempt_id=event.attempt_id, reason=reason))


def announce(uow: UnitOfWork, row: asyncpg.Record, ptype: asyncpg.Record | None) -> None:
    """The charge's outcome; a capture says whether the type's success means money received."""
    view = transaction_view(row)
    if row["success"]:
        uow.emit(
            PaymentCaptured(
                order_id=row["order_id"],
                attempt_id=row["attempt_id"],
                success_status=ptype["success_status"] if ptype else "",
                paid=bool(ptype and ptype["paid_on_success"]),
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
        if (
            row is None
            or not domain.open_for_checkout(row["enabled"], row["offered"])
            or row["driver"] not in providers
        ):
            return ResolvePaymentReply(errors={field: [domain.UNKNOWN_TYPE]})
        error = await providers[row["driver"]].validate_token(request.payment_token)
        if error is not None:
            return ResolvePaymentReply(payment_type=type_view(row), errors={"payment_token": [error]})
        return ResolvePaymentReply(payment_type=type_view(row))

    return [Responder(ResolvePayment, on_resolve_payment)]
