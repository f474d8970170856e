"""Pure rules of the payments service: transaction statuses, refunds and voids."""

from __future__ import annotations

from dataclasses import dataclass

from shared.money import to_major

# Statuses of a charge transaction. A charge is `captured` or `declined` when recorded; a capture
# later becomes `refunded` (fully; partial refunds keep it `captured`) or `voided`.
CAPTURED = "captured"
DECLINED = "declined"
REFUNDED = "refunded"
VOIDED = "voided"

DEFAULT_TYPE_HANDLE = "card"

ALREADY_PAID = "This order already has a captured payment"
UNKNOWN_TYPE = "The selected payment type is invalid."
NOT_CHARGED = "The payment provider has no charge for this attempt"
NO_CAPTURED_AMOUNT = "The payment provider did not report the amount it captured; the capture was voided"


@dataclass(frozen=True)
class Settlement:
    status: str  # of the attempt's charge: captured | declined | voided
    message: str | None
    void: bool  # the provider's capture must be voided


def settle(
    success: bool | None,
    message: str | None,
    *,
    expected: tuple[int, str],
    captured: tuple[int | None, str | None] | None,
    order_paid: bool,
) -> Settlement:
    """What an attempt's charge becomes, given the provider's result for the attempt's key.

    `success` is None when the provider has no charge for the key (it never got the request);
    `expected` is the (amount, currency) the attempt asked for; `captured` what the provider
    reports it captured, None from a provider that moves no money (nothing to compare). A capture
    that cannot stand (the order is paid already, or the amount or currency is not the one asked
    for) is voided and the attempt fails.
    """
    if order_paid:  # by another attempt: this one fails whatever its result, and its capture is reversed
        return Settlement(VOIDED if success else DECLINED, ALREADY_PAID, void=bool(success))
    if success is None:
        return Settlement(DECLINED, NOT_CHARGED, void=False)
    if not success:
        return Settlement(DECLINED, message, void=False)
    mismatch = None if captured is None else capture_mismatch(expected, captured)
    if mismatch is not None:
        return Settlement(VOIDED, mismatch, void=True)
    return Settlement(CAPTURED, message, void=False)


def capture_mismatch(expected: tuple[int, str], captured: tuple[int | None, str | None]) -> str | None:
    """Why a capture does not match what was asked for, or None when it does. Currency codes
    compare case-blind (some processors report them in lower case)."""
    amount, currency = captured
    if amount is None or currency is None:
        return NO_CAPTURED_AMOUNT
    if (amount, currency.upper()) == (expected[0], expected[1].upper()):
        return None
    return (
        f"The payment provider captured {to_major(amount, currency)} {currency} instead of "
        f"{to_major(*expected)} {expected[1]}; the capture was voided"
    )


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


# ---------------------------------------------------------------------------------------------
# Payment types by policy: `enabled` (it may be charged at all) and `offered` (the storefront
# lists it and checkout accepts it). A checkout needs both; a charge needs `enabled`.

NO_PROVIDER = "This payment type's provider is not available"


def open_for_checkout(enabled: bool, offered: bool) -> bool:
    return enabled and offered


@dataclass(frozen=True)
class Policy:
    enabled: bool
    offered: bool


class PolicyRefused(Exception):
    """A policy change the rules forbid (a 422 on `field`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def change_policy(current: Policy, *, enabled: bool | None, offered: bool | None, provider_available: bool) -> Policy:
    """The policy after a change (None: unchanged). Switching something on needs a provider for
    the type's driver in this service; switching off is always allowed."""
    new = Policy(
        current.enabled if enabled is None else enabled,
        current.offered if offered is None else offered,
    )
    if not provider_available:
        for name in ("enabled", "offered"):
            if getattr(new, name) and not getattr(current, name):
                raise PolicyRefused(name, NO_PROVIDER)
    return new
