"""Pure rules of the payments service: transaction statuses, refunds and voids."""

from __future__ import annotations

from dataclasses import dataclass

# Statuses of a charge transaction. A charge is `captured` or `declined` when recorded; a capture
# later becomes `refunded` (fully; partial refunds keep it `captured`) or `voided`.
CAPTURED = "captured"
DECLINED = "declined"
REFUNDED = "refunded"
VOIDED = "voided"

DEFAULT_TYPE_HANDLE = "card"

ALREADY_PAID = "This order already has a captured payment"
UNKNOWN_TYPE = "The selected payment type is invalid."


class Refused(Exception):
    """A refund or void that the rules forbid (a 400 with this message, as upstream)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class RefundPlan:
    amount: int
    refunded_total: int  # after this refund
    fully_refunded: bool
    status: str  # of the charge after this refund


def plan_refund(kind: str, status: str, amount: int, refunded_total: int, requested: int | None) -> RefundPlan:
    """What a refund of `requested` (None: all that remains) does to a charge, or Refused."""
    if kind != "charge":
        raise Refused("Only a payment can be refunded")
    if status == REFUNDED or (status == CAPTURED and refunded_total >= amount):
        raise Refused("Refund already issued")
    if status != CAPTURED:
        raise Refused("Only a captured payment can be refunded")
    remaining = amount - refunded_total
    value = remaining if requested is None else requested
    if value <= 0:
        raise Refused("The refund amount must be at least 1")
    if value > remaining:
        raise Refused("Amount exceeds remaining balance")
    total = refunded_total + value
    full = total == amount
    return RefundPlan(value, total, full, REFUNDED if full else CAPTURED)


def check_void(kind: str, status: str, refunded_total: int) -> None:
    """Only an unrefunded capture can be voided."""
    if kind != "charge":
        raise Refused("Only a payment can be voided")
    if status == VOIDED:
        raise Refused("This payment has already been voided")
    if status != CAPTURED or refunded_total > 0:
        raise Refused("Only an unrefunded captured payment can be voided")
