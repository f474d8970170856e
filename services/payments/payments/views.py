"""Wire shapes of the payments service: the response models (the OpenAPI document's) and the
functions that build responses and contract views from records."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from payments.providers import ClientToken, Provider
from shared.contracts import PaymentTypeView, TransactionView
from shared.http import TransactionOut


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


class TransactionResponse(BaseModel):
    data: TransactionOut


def provider_data(provider: Provider, token: ClientToken) -> ProviderData:
    return ProviderData(
        name=provider.name, client_token=token.value, exires_at=token.expires_at, expires_at=token.expires_at
    )


def payment_type_data(row: asyncpg.Record) -> PaymentTypeData:
    return PaymentTypeData(id=row["id"], name=row["name"], handle=row["handle"], driver=row["driver"])


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


def type_view(row: Mapping[str, Any]) -> PaymentTypeView:
    return PaymentTypeView(
        id=row["id"],
        name=row["name"],
        handle=row["handle"],
        driver=row["driver"],
        success_status=row["success_status"],
    )
