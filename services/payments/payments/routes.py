"""The payments service's public operations: routes, gateway facts and OpenAPI models."""

from __future__ import annotations

from payments import handlers
from payments.models import RefundRequest
from payments.views import PaymentTypeCollection, ProviderResponse, TransactionResponse
from shared.operations import Operation

OPERATIONS: list[Operation] = [
    Operation(
        "GET",
        "/payments/provider",
        handlers.provider_info,
        "The default provider and a client token",
        response=ProviderResponse,
    ),
    Operation("GET", "/payments/types", handlers.payment_types, "Payment types", response=PaymentTypeCollection),
    Operation(
        "POST",
        "/payments/{id}/refund",
        handlers.refund,
        "Refund a transaction",
        admin=True,
        request=RefundRequest,
        response=TransactionResponse,
        errors=(400, 401, 403, 404, 422),
    ),
    Operation(
        "POST",
        "/payments/{id}/void",
        handlers.void,
        "Void a transaction",
        admin=True,
        response=TransactionResponse,
        errors=(400, 401, 403, 404),
    ),
]
