"""The payments service's public operations: routes, gateway facts and OpenAPI models."""

from __future__ import annotations

from payments import handlers
from payments.models import RefundRequest, TypePolicyChange
from payments.views import (
    PaymentTypeCollection,
    PaymentTypePolicyCollection,
    PaymentTypePolicyResponse,
    ProviderResponse,
    TransactionResponse,
)
from shared.operations import Operation

ADMIN_ERRORS = (401, 403)

OPERATIONS: list[Operation] = [
    Operation(
        "GET",
        "/payments/provider",
        handlers.provider_info,
        "The default provider and a client token",
        response=ProviderResponse,
    ),
    Operation(
        "GET",
        "/payments/providers/{handle}",
        handlers.provider_by_handle,
        "A provider by its handle, and a client token",
        response=ProviderResponse,
        errors=(404,),
    ),
    Operation(
        "GET",
        "/payments/types",
        handlers.payment_types,
        "Payment types",
        description="The payment types a checkout may use: enabled and offered.",
        response=PaymentTypeCollection,
    ),
    Operation(
        "GET",
        "/payments/types/all",
        handlers.list_type_policies,
        "Every payment type with its policy",
        admin=True,
        response=PaymentTypePolicyCollection,
        errors=ADMIN_ERRORS,
    ),
    Operation(
        "PUT",
        "/payments/types/{id}",
        handlers.change_type_policy,
        "Change a payment type's policy",
        description=(
            "Enable or disable a type (a disabled type is never charged) and offer or withdraw it (checkout "
            "accepts a type that is enabled and offered). With `version`, a change to a type that has "
            "changed since is refused with 409."
        ),
        admin=True,
        request=TypePolicyChange,
        response=PaymentTypePolicyResponse,
        errors=(*ADMIN_ERRORS, 404, 409, 422),
    ),
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
