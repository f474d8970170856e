"""HTTP handlers of the payments service (the operation table is `routes.py`)."""

from __future__ import annotations

from aiohttp import web

from payments import domain, queries
from payments.models import RefundRequest
from payments.providers import PROVIDERS, Provider
from payments.views import (
    PaymentTypeCollection,
    ProviderResponse,
    TransactionResponse,
    payment_type_data,
    provider_data,
    transaction_view,
)
from shared import runtime
from shared.contracts import PaymentRefunded, PaymentVoided
from shared.http import ApiError, NotFound, TransactionOut, model_response, new_id, path_id, read_json, require_admin


async def provider_info(request: web.Request) -> web.Response:
    settings = request.app[runtime.SETTINGS]
    provider = request.app[PROVIDERS][settings.default_provider]
    token = await provider.client_token()
    return model_response(ProviderResponse(data=provider_data(provider, token)))


async def payment_types(request: web.Request) -> web.Response:
    rows = await queries.enabled_types(request.app[runtime.POOL])
    return model_response(PaymentTypeCollection(data=[payment_type_data(row) for row in rows]))


def _provider(request: web.Request, driver: str) -> Provider:
    provider = request.app[PROVIDERS].get(driver)
    if provider is None:
        raise ApiError(400, "This payment's provider is not available")
    return provider


# Refunds and voids ask the provider inside the unit of work, with the charge locked: the lock
# serialises them, so concurrent refunds can never add up to more than the charge, and the
# provider is asked only for what the ledger says remains.


async def refund(request: web.Request) -> web.Response:
    require_admin(request)
    charge_id = path_id(request)
    body = await read_json(request, RefundRequest)
    async with runtime.unit_of_work(request) as uow:
        charge = await queries.transaction(uow.conn, charge_id, lock=True)
        if charge is None:
            raise NotFound()
        try:
            plan = domain.plan_refund(
                charge["kind"], charge["status"], charge["amount"], charge["refunded_total"], body.amount
            )
        except domain.Refused as exc:
            raise ApiError(400, exc.message) from exc
        provider = _provider(request, charge["driver"])
        refund_id = new_id()
        result = await provider.refund(charge["transaction_id"], plan.amount, idempotency_key=refund_id)
        if not result.success:
            raise ApiError(400, result.message or "The provider refused the refund")
        await queries.add_refund(uow.conn, charge_id, plan.amount, plan.status)
        row = await queries.insert_transaction(
            uow.conn,
            {
                "id": refund_id,
                "order_id": charge["order_id"],
                "kind": "refund",
                "amount": plan.amount,
                "currency": charge["currency"],
                "payment_type_id": charge["payment_type_id"],
                "provider": charge["provider"],
                "driver": charge["driver"],
                "transaction_id": result.reference,
                "merchant": charge["merchant"],
                "status": domain.REFUNDED,
                "success": True,
                "refund": True,
                "card_type": charge["card_type"],
                "last_four": charge["last_four"],
                "notes": body.notes,
                "parent_id": charge_id,
            },
        )
        uow.emit(
            PaymentRefunded(
                order_id=charge["order_id"],
                refunded_total=plan.refunded_total,
                fully_refunded=plan.fully_refunded,
                transaction=transaction_view(row),
            )
        )
    return model_response(TransactionResponse(data=TransactionOut.of(row)))


async def void(request: web.Request) -> web.Response:
    require_admin(request)
    charge_id = path_id(request)
    async with runtime.unit_of_work(request) as uow:
        charge = await queries.transaction(uow.conn, charge_id, lock=True)
        if charge is None:
            raise NotFound()
        try:
            domain.check_void(charge["kind"], charge["status"], charge["refunded_total"])
        except domain.Refused as exc:
            raise ApiError(400, exc.message) from exc
        provider = _provider(request, charge["driver"])
        result = await provider.void(charge["transaction_id"])
        if not result.success:
            raise ApiError(400, result.message or "The provider refused the void")
        voided = await queries.mark_voided(uow.conn, charge_id)
        # The ledger keeps the void as its own row; the charge itself now reads `voided`.
        await queries.insert_transaction(
            uow.conn,
            {
                "id": new_id(),
                "order_id": charge["order_id"],
                "kind": "void",
                "amount": charge["amount"],
                "currency": charge["currency"],
                "payment_type_id": charge["payment_type_id"],
                "provider": charge["provider"],
                "driver": charge["driver"],
                "transaction_id": charge["transaction_id"],
                "merchant": charge["merchant"],
                "status": domain.VOIDED,
                "success": True,
                "parent_id": charge_id,
            },
        )
        uow.emit(PaymentVoided(order_id=charge["order_id"], transaction=transaction_view(voided)))
    return model_response(TransactionResponse(data=TransactionOut.of(voided)))
