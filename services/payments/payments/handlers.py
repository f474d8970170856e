"""HTTP handlers of the payments service (the operation table is `routes.py`)."""

from __future__ import annotations

import logging

import asyncpg
from aiohttp import web

from payments import domain, queries
from payments.models import RefundRequest, TypePolicyChange
from payments.providers import PROVIDERS, Provider
from payments.views import (
    PaymentTypeCollection,
    PaymentTypePolicyCollection,
    PaymentTypePolicyResponse,
    ProviderResponse,
    TransactionResponse,
    payment_type_data,
    payment_type_policy_data,
    provider_data,
    transaction_view,
)
from shared import runtime
from shared.contracts import PaymentRefunded, PaymentVoided
from shared.http import (
    ApiError,
    NotFound,
    TransactionOut,
    ValidationFailed,
    model_response,
    new_id,
    path_id,
    read_json,
    require_admin,
)
from shared.uow import Conflict, retry_on_conflict

log = logging.getLogger(__name__)

MSG_STALE_TYPE = "This payment type has changed since that version"


async def provider_info(request: web.Request) -> web.Response:
    settings = request.app[runtime.SETTINGS]
    provider = request.app[PROVIDERS][settings.default_provider]
    token = await provider.client_token()
    return model_response(ProviderResponse(data=provider_data(provider, token)))


async def provider_by_handle(request: web.Request) -> web.Response:
    """`GET /payments/providers/{handle}`: what `provider_info` says of the default, for any
    enabled provider by its handle (its driver); an unknown or disabled one is a 404."""
    provider = request.app[PROVIDERS].get(request.match_info["handle"])
    if provider is None:
        raise NotFound()
    token = await provider.client_token()
    return model_response(ProviderResponse(data=provider_data(provider, token)))


async def payment_types(request: web.Request) -> web.Response:
    """What the storefront may choose: the types that are enabled, offered and chargeable here."""
    providers = request.app[PROVIDERS]
    rows = await queries.offered_types(request.app[runtime.POOL])
    return model_response(
        PaymentTypeCollection(data=[payment_type_data(row) for row in rows if row["driver"] in providers])
    )


async def list_type_policies(request: web.Request) -> web.Response:
    require_admin(request)
    providers = request.app[PROVIDERS]
    rows = await queries.all_types(request.app[runtime.POOL])
    data = [payment_type_policy_data(row, row["driver"] in providers) for row in rows]
    return model_response(PaymentTypePolicyCollection(data=data))


async def change_type_policy(request: web.Request) -> web.Response:
    """Enable, disable, offer or withdraw a type: a compare-and-set on its version, planned again
    when another change came first (unless the admin named the version: then that is a 409)."""
    require_admin(request)
    type_id = path_id(request)
    body = await read_json(request, TypePolicyChange)
    nulls = [
        name
        for name in ("enabled", "offered", "version")
        if name in body.model_fields_set and getattr(body, name) is None
    ]
    if nulls:
        raise ValidationFailed({name: ["This field cannot be null."] for name in nulls})
    if body.enabled is None and body.offered is None:
        raise ValidationFailed.one("enabled", "The enabled field is required when offered is not present.")
    providers = request.app[PROVIDERS]

    async def change() -> asyncpg.Record:
        async with runtime.unit_of_work(request) as uow:
            row = await queries.type_by_id(uow.conn, type_id)
            if row is None:
                raise NotFound()
            if body.version is not None and body.version != row["version"]:
                raise ApiError(409, MSG_STALE_TYPE)
            try:
                policy = domain.change_policy(
                    domain.Policy(row["enabled"], row["offered"]),
                    enabled=body.enabled,
                    offered=body.offered,
                    provider_available=row["driver"] in providers,
                )
            except domain.PolicyRefused as exc:
                raise ValidationFailed.one(exc.field, exc.message) from exc
            if policy == domain.Policy(row["enabled"], row["offered"]):
                return row
            changed = await queries.set_type_policy(uow.conn, type_id, row["version"], policy.enabled, policy.offered)
            if changed is None:
                raise Conflict()
            log.info(
                "payment type policy changed",
                extra={"payment_type": row["handle"], "enabled": policy.enabled, "offered": policy.offered},
            )
            return changed

    row = await retry_on_conflict(change)
    return model_response(PaymentTypePolicyResponse(data=payment_type_policy_data(row, row["driver"] in providers)))


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
