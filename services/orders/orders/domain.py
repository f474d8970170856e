"""Pure order logic: the status machine, totals, references, countries, completeness. No I/O.

The status machine lives here and only here: every status change in the service asks
`transition()` (or `admin_transition()`) first and then writes it with a compare-and-set.
Amounts are integer minor units.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import money
from shared.countries import country_name

# ---------------------------------------------------------------------------------------------
# Statuses

AWAITING_PAYMENT = "awaiting-payment"
PAYMENT_PROCESSING = "payment-processing"  # internal in-flight state of the checkout saga
PAYMENT_RECEIVED = "payment-received"  # the card payment types' success status
OFFLINE_PAYMENT = "offline-payment"  # the offline payment type's success status
FAILED = "failed"
DISPATCHED = "dispatched"
EXPIRED = "expired"
VOIDED = "voided"
REFUNDED = "refunded"

# Statuses that are not a payment type's success status.
UNPLACED = frozenset({AWAITING_PAYMENT, PAYMENT_PROCESSING, FAILED, EXPIRED})
AFTER_PLACED = frozenset({DISPATCHED, VOIDED, REFUNDED})
RESERVED = UNPLACED | AFTER_PLACED
KNOWN_SUCCESS = frozenset({PAYMENT_RECEIVED, OFFLINE_PAYMENT})
STATUSES = tuple(sorted(RESERVED | KNOWN_SUCCESS))
# Success statuses that do not mean the money was received (the offline type's: a promise to
# pay). The order is placed, but shipping holds its shipment until an admin moves the order to
# PAYMENT_RECEIVED, the paid status; no change makes a paid order unpaid again.
UNPAID = frozenset({OFFLINE_PAYMENT})

# Orders whose lines, addresses and shipping may still change.
EDITABLE = frozenset({AWAITING_PAYMENT, FAILED})
# Orders that may start a checkout attempt.
PROCESSABLE = EDITABLE

SLUG = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


def is_success(status: str) -> bool:
    """A payment type's success status: the order is placed and not yet dispatched/settled."""
    return status not in RESERVED and bool(SLUG.match(status))


def is_placed(status: str) -> bool:
    return is_success(status) or status in AFTER_PLACED


def success_status(value: str | None) -> str:
    """The success status a payment type asked for, if it is a usable one."""
    if value and is_success(value):
        return value
    return PAYMENT_RECEIVED


def _class(status: str) -> str:
    if status in UNPAID:
        return "unpaid"
    return "placed" if is_success(status) else status


# The whole machine: from (a status class) -> the status classes it may move to. "placed" is
# any payment type's success status but an UNPAID one, "unpaid" one of those. Shipping's and
# payments' facts (dispatched, refunded, voided) are followed from either.
TRANSITIONS: dict[str, frozenset[str]] = {
    AWAITING_PAYMENT: frozenset({PAYMENT_PROCESSING, EXPIRED}),
    FAILED: frozenset({PAYMENT_PROCESSING, EXPIRED}),
    PAYMENT_PROCESSING: frozenset({FAILED, "placed", "unpaid"}),
    "placed": frozenset({DISPATCHED, REFUNDED, VOIDED, "placed"}),
    "unpaid": frozenset({DISPATCHED, REFUNDED, VOIDED, "placed"}),
    DISPATCHED: frozenset({REFUNDED, VOIDED}),
    EXPIRED: frozenset(),
    VOIDED: frozenset(),
    REFUNDED: frozenset(),
}

# What an admin may do by hand (`PUT /orders/{id}`): money-bearing moves (processing, placing,
# refunding, voiding) belong to the saga and to payments, never to a hand-set status. An unpaid
# order may only be marked paid: it is not dispatched before.
ADMIN_TRANSITIONS: dict[str, frozenset[str]] = {
    AWAITING_PAYMENT: frozenset({EXPIRED}),
    FAILED: frozenset({EXPIRED}),
    "placed": frozenset({DISPATCHED, "placed"}),
    "unpaid": frozenset({"placed"}),
}


class TransitionRefused(Exception):
    def __init__(self, current: str, target: str):
        super().__init__(f"An order cannot go from {current} to {target}")
        self.current = current
        self.target = target


def can_transition(current: str, target: str, table: Mapping[str, frozenset[str]] = TRANSITIONS) -> bool:
    if current == target:
        return False
    if target not in RESERVED and not is_success(target):
        return False
    return _class(target) in table.get(_class(current), frozenset())


def transition(current: str, target: str) -> str:
    if not can_transition(current, target):
        raise TransitionRefused(current, target)
    return target


def admin_transition(current: str, target: str) -> str:
    """A status an admin sets by hand: only known statuses, only along the admin table."""
    if target not in STATUSES or not can_transition(current, target, ADMIN_TRANSITIONS):
        raise TransitionRefused(current, target)
    return target


def marks_paid(current: str, target: str) -> bool:
    """Whether a change records that a placed order's money was received: the move to the paid
    status (from offline-payment, or from any success status a payment type may have used for an
    order it did not take the money for). Shipping opens the shipment it held when it sees one."""
    return target == PAYMENT_RECEIVED and current != target and is_success(current)


class NotEditable(Exception):
    """The order cannot change now: placed, in flight or expired."""

    def __init__(self, status: str):
        self.status = status
        if status == PAYMENT_PROCESSING:
            self.http_status, message = 409, "This order is being processed"
        elif status == EXPIRED:
            self.http_status, message = 403, "This order has expired"
        else:
            self.http_status, message = 403, "This order has already been placed"
        super().__init__(message)
        self.message = message


def ensure_editable(status: str) -> None:
    if status not in EDITABLE:
        raise NotEditable(status)


# ---------------------------------------------------------------------------------------------
# Totals


@dataclass(frozen=True)
class LineAmounts:
    line_total: int
    tax_total: int
    discount_total: int
    is_shipping: bool


@dataclass(frozen=True)
class Totals:
    sub_total: int
    delivery_total: int
    discount_total: int
    tax_total: int
    order_total: int


def totals(lines: Iterable[LineAmounts]) -> Totals:
    """sub_total = goods ex-tax minus their discounts; delivery = the shipping line minus its
    discount (free shipping waives all of it); order_total = sub_total + delivery + tax. A line's
    `line_total` is before its discount and its `tax_total` after it, everywhere."""
    goods = discount = delivery = tax_total = 0
    for line in lines:
        tax_total += line.tax_total
        if line.is_shipping:
            delivery += line.line_total - line.discount_total
        else:
            goods += line.line_total
            discount += line.discount_total
    sub_total = goods - discount
    return Totals(sub_total, delivery, discount, tax_total, sub_total + delivery + tax_total)


@dataclass(frozen=True)
class ShippingLine:
    description: str
    option: str | None
    sku: str
    unit_price: int
    line_total: int
    tax_total: int
    tax_rate: int
    discount_total: int = 0


def shipping_line(
    method_name: str, method_code: str | None, zone_name: str, rate: int, *, free: bool = False
) -> ShippingLine:
    """The order's one shipping line: the price's rate, taxed at the default rate, floored. Free
    shipping (a discount of the order's) keeps the rate as the line's total and discounts all of
    it: the line comes to 0, with no tax."""
    discount = rate if free else 0
    return ShippingLine(
        description=method_name,
        option=zone_name,
        sku=method_code or "",
        unit_price=rate,
        line_total=rate,
        tax_total=money.tax(rate - discount, money.DEFAULT_TAX_RATE_BP),
        tax_rate=money.DEFAULT_TAX_RATE_BP,
        discount_total=discount,
    )


# ---------------------------------------------------------------------------------------------
# References


def reference_period(placed_at: datetime) -> str:
    return placed_at.strftime("%Y-%m")


def reference(prefix: str, period: str, number: int) -> str:
    """`<prefix>YYYY-MM-NNNN`; the counter widens past 9999 rather than wrapping."""
    return f"{prefix}{period}-{number:04d}"


def invoice_reference(ref: str) -> str:
    return f"#INV-{ref}"


# ---------------------------------------------------------------------------------------------
# Countries and addresses

# A country no admin has set is enabled (addresses may use it) and not preferred, as upstream.
ENABLED_BY_DEFAULT = True
PREFERRED_BY_DEFAULT = False


ADDRESS_FIELDS = (
    "firstname",
    "lastname",
    "company_name",
    "address",
    "address_two",
    "address_three",
    "city",
    "county",
    "state",
    "zip",
    "country",
    "phone",
    "email",
    "vat_no",
)


def address_view(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """An address as the API shows it: every field present, the country by name."""
    stored = stored or {}
    view = {name: stored.get(name) for name in ADDRESS_FIELDS}
    view["country"] = country_name(stored.get("country"))
    return view


# ---------------------------------------------------------------------------------------------
# Completeness of an order before checkout


@dataclass(frozen=True)
class Readiness:
    line_count: int
    needs_shipping: bool
    has_shipping_address: bool
    has_shipping_price: bool
    has_billing_address: bool
    has_contact_email: bool
    order_total: int


MSG_NO_LINES = "The order has no lines"
MSG_NO_SHIPPING_ADDRESS = "The order has no shipping address"
MSG_NO_SHIPPING_PRICE = "Please choose a shipping option"
MSG_NO_BILLING_ADDRESS = "The order has no billing address"
MSG_NO_EMAIL = "The order has no contact email"
MSG_NOTHING_TO_PAY = "The order total must be more than zero"


def missing_for_checkout(ready: Readiness) -> dict[str, list[str]]:
    """The 422 map of what an order still lacks before it can be processed; empty when complete."""
    errors: dict[str, list[str]] = {}
    if ready.line_count == 0:
        errors["lines"] = [MSG_NO_LINES]
    if ready.needs_shipping and not ready.has_shipping_address:
        errors["shipping_address"] = [MSG_NO_SHIPPING_ADDRESS]
    if ready.needs_shipping and not ready.has_shipping_price:
        errors["price_id"] = [MSG_NO_SHIPPING_PRICE]
    if not ready.has_billing_address:
        errors["billing_address"] = [MSG_NO_BILLING_ADDRESS]
    if not ready.has_contact_email:
        errors["contact.email"] = [MSG_NO_EMAIL]
    if ready.line_count and ready.order_total <= 0:
        errors["order_total"] = [MSG_NOTHING_TO_PAY]
    return errors
