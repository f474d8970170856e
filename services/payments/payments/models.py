"""Request bodies at the payments service's HTTP edge (responses: `views.py`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

MAX_AMOUNT = 10**12


class RefundRequest(BaseModel):
    """Minor units; without an amount, all that remains is refunded (as upstream)."""

    amount: Annotated[int, Field(strict=True, ge=1, le=MAX_AMOUNT)] | None = None
    notes: Annotated[str, Field(max_length=1000)] | None = None


class TypePolicyChange(BaseModel):
    """`PUT /payments/types/{id}`: what to change (at least one of the two). With `version`, the
    change applies only to the type as it was at that version (else 409)."""

    enabled: Annotated[bool, Field(strict=True)] | None = None
    offered: Annotated[bool, Field(strict=True)] | None = None
    version: Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)] | None = None
