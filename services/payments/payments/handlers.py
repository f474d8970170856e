"""HTTP handlers of the payments service; the route list is `ROUTES` at the end."""

from __future__ import annotations

from aiohttp import web

from payments import domain, queries
from payments.models import RefundRequest, transaction_data, transaction_view
from payments.resources import PROVIDERS
from shared import outbox, runtime
from shared.contracts import PaymentRefunded, PaymentVoided
from shared.http import ApiError, NotFound, json_response, new_id, path_id, read_json, request_id, require_admin

PREFIX = "/api/v1"


async def provider_info(request: web.Request) -> web.Response:
    settings = request.app[runtime.SETTINGS]
    provider = request.app[PROVIDERS][settings.default_provider]
    token = await provider.client_token()
    expires = token.expires_at.isoformat() if token.expires_at else None
    return json_response(
        {"data": {"name": provider.name, "client_token": token.value, "exires_at": expires, "expires_at": expires}}
    )


async def payment_types(request: web.Request) -> web.Response:
    rows = await queries.enabled_types(request.app[runtime.POOL])
    return json_response(
        {"data": [{"id": r["id"], "name": r["name"], "handle": r["handle"], "driver": r["driver"]} for r in rows]}
    )


async def refund(request: web.Request) -> web.Response:
    require_admin(request)
    charge_id = path_id(request)
    body = await read_json(request, RefundRequest)
    async with request.app[runtime.POOL].acquire() as conn, conn.transaction():
        # The row lock serialises refunds of one charge: concurrent ones can never add up to more
        # than the charge, and the provider is asked only for what the ledger says remains.
        charge = await queries.transaction(conn, charge_id, lock=True)
        if charge is None:
            raise NotFound()
        try:
            plan = domain.plan_refund(
                charge["kind"], charge["status"], charge["amount"], charge["refunded_total"], body.amount
            )
        except domain.Refused as exc:
            raise ApiError(400, exc.message) from exc
        provider = request.app[PROVIDERS].get(charge["driver"])
        if provider is None:
            raise ApiError(400, "This payment's provider is not available")
        refund_id = new_id()
        result = await provider.refund(charge["transaction_id"], plan.amount, idempotency_key=refund_id)
        if not result.success:
            raise ApiError(400, result.message or "The provider refused the refund")
        updated = await queries.add_refund(conn, charge_id, charge["version"], plan.amount, plan.status)
        if updated is None:  # cannot happen under the row lock; never write half a refund
            raise ApiError(409, "The payment changed, try again")
        row = await queries.insert_transaction(
            conn,
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
        await outbox.enqueue(
            conn,
            PaymentRefunded(
                order_id=charge["order_id"],
                refunded_total=plan.refunded_total,
                fully_refunded=plan.fully_refunded,
                transaction=transaction_view(row),
            ),
            "payments",
            correlation_id=request_id(request),
        )
    return json_response({"data": transaction_data(row)})


async def void(request: web.Request) -> web.Response:
    require_admin(request)
    charge_id = path_id(request)
    async with request.app[runtime.POOL].acquire() as conn, conn.transaction():
        charge = await queries.transaction(conn, charge_id, lock=True)
        if charge is None:
            raise NotFound()
        try:
            domain.check_void(charge["kind"], charge["status"], charge["refunded_total"])
        except domain.Refused as exc:
            raise ApiError(400, exc.message) from exc
        provider = request.app[PROVIDERS].get(charge["driver"])
        if provider is None:
            raise ApiError(400, "This payment's provider is not available")
        result = await provider.void(charge["transaction_id"])
        if not result.success:
            raise ApiError(400, result.message or "The provider refused the void")
        updated = await queries.mark_voided(conn, charge_id, charge["version"])
        if updated is None:
            raise ApiError(409, "The payment changed, try again")
        # The ledger keeps the void as its own row; the charge itself now reads `voided`.
        await queries.insert_transaction(
            conn,
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
        await outbox.enqueue(
            conn,
            PaymentVoided(order_id=charge["order_id"], transaction=transaction_view(updated)),
            "payments",
            correlation_id=request_id(request),
        )
    return json_response({"data": transaction_data(updated)})


ROUTES = [
    web.get(f"{PREFIX}/payments/provider", provider_info),
    web.get(f"{PREFIX}/payments/types", payment_types),
    web.post(f"{PREFIX}/payments/{{id}}/refund", refund),
    web.post(f"{PREFIX}/payments/{{id}}/void", void),
]
