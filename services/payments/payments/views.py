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


class PaymentTypePolicyData(PaymentTypeData):
    """A payment type as an admin sees it: its policy, and whether this service can charge it."""

    success_status: str
    enabled: bool
    offered: bool
    paid_on_success: bool  # its success means the money was received (card), or not (offline)
    available: bool  # this service has a provider for its driver
    version: int


class PaymentTypePolicyResponse(BaseModel):
    data: PaymentTypePolicyData


class PaymentTypePolicyCollection(BaseModel):
    data: list[PaymentTypePolicyData]


class TransactionResponse(BaseModel):
    data: TransactionOut


def provider_data(provider: Provider, token: ClientToken) -> ProviderData:
    return ProviderData(
        name=provider.name, client_token=token.value, exires_at=token.expires_at, expires_at=token.expires_at
    )


def payment_type_data(row: asyncpg.Record) -> PaymentTypeData:
    return PaymentTypeData(id=row["id"], name=row["name"], handle=row["handle"], driver=row["driver"])


def payment_type_policy_data(row: asyncpg.Record, available: bool) -> PaymentTypePolicyData:
    return PaymentTypePolicyData(
        id=row["id"],
        name=row["name"],
        handle=row["handle"],
        driver=row["driver"],
        success_status=row["success_status"],
        enabled=row["enabled"],
        offered=row["offered"],
        paid_on_success=row["paid_on_success"],
        available=available,
        version=row["version"],
    )


def transaction_view(row: Mapping[str, Any]) -> TransactionView:
    """The ledger row as payments publishes it in its events."""
    return TransactionView.model_validate({name: row[name] for name in TransactionView.model_fields})


def type_view(row: Mapping[str, Any]) -> PaymentTypeView:
    return PaymentTypeView(
        id=row["id"],
        name=row["name"],
        handle=row["handle"],
        driver=row["driver"],
        success_status=row["success_status"],
    )
