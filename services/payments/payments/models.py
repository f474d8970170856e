"""Request bodies at the payments service's HTTP edge (responses: `views.py`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

MAX_AMOUNT = 10**12


class RefundRequest(BaseModel):
    """Minor units; without an amount, all that remains is refunded (as upstream)."""

    amount: Annotated[int, Field(strict=True, ge=1, le=MAX_AMOUNT)] | None = None
    notes: Annotated[str, Field(max_length=1000)] | None = None
