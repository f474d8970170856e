"""Pydantic models at the payments service's HTTP edge, and the OpenAPI operations table."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from shared.contracts import PaymentTypeView, TransactionView

MAX_AMOUNT = 10**12


class RefundRequest(BaseModel):
    """Minor units; without an amount, all that remains is refunded (as upstream)."""

    amount: Annotated[int, Field(strict=True, ge=1, le=MAX_AMOUNT)] | None = None
    notes: Annotated[str, Field(max_length=1000)] | None = None


class ProviderData(BaseModel):
    name: str
    client_token: str
    # upstream's misspelling, which clients read; `expires_at` is the same value
    exires_at: datetime | None
    expires_at: datetime | None


class ProviderResponse(BaseModel):
    data: ProviderData


class PaymentTypeData(BaseModel):
    id: str
    name: str
    handle: str
    driver: str


class PaymentTypeCollection(BaseModel):
    data: list[PaymentTypeData]


class TransactionData(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    transaction_id: str
    merchant: str
    amount: int
    provider: str
    driver: str
    success: bool
    refund: bool
    status: str
    card_type: str | None
    last_four: str | None
    notes: str | None
    created_at: datetime


class TransactionResponse(BaseModel):
    data: TransactionData


def transaction_view(row: Mapping[str, Any]) -> TransactionView:
    return TransactionView(
        id=row["id"],
        order_id=row["order_id"],
        transaction_id=row["transaction_id"],
        merchant=row["merchant"],
        amount=row["amount"],
        currency=row["currency"],
        provider=row["provider"],
        driver=row["driver"],
        success=row["success"],
        refund=row["refund"],
        status=row["status"],
        card_type=row["card_type"],
        last_four=row["last_four"],
        notes=row["notes"],
        created_at=row["created_at"],
    )


def transaction_data(row: asyncpg.Record) -> dict[str, Any]:
    return TransactionData.model_validate(transaction_view(row), from_attributes=True).model_dump()


def type_view(row: asyncpg.Record) -> PaymentTypeView:
    return PaymentTypeView(
        id=row["id"],
        name=row["name"],
        handle=row["handle"],
        driver=row["driver"],
        success_status=row["success_status"],
    )


OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/payments/provider"): {"request": None, "response": ProviderResponse, "status": 200, "errors": []},
    ("GET", "/payments/types"): {"request": None, "response": PaymentTypeCollection, "status": 200, "errors": []},
    ("POST", "/payments/{id}/refund"): {
        "request": RefundRequest,
        "response": TransactionResponse,
        "status": 200,
        "errors": [400, 401, 403, 404, 422],
    },
    ("POST", "/payments/{id}/void"): {
        "request": None,
        "response": TransactionResponse,
        "status": 200,
        "errors": [400, 401, 403, 404],
    },
}
