"""The pure order logic: status machine, totals, references, countries, completeness."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orders import domain
from orders.domain import (
    AWAITING_PAYMENT,
    DISPATCHED,
    EXPIRED,
    FAILED,
    OFFLINE_PAYMENT,
    PAYMENT_PROCESSING,
    PAYMENT_RECEIVED,
    REFUNDED,
    VOIDED,
)
from shared.countries import country_code


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (AWAITING_PAYMENT, PAYMENT_PROCESSING, True),
        (FAILED, PAYMENT_PROCESSING, True),
        (AWAITING_PAYMENT, EXPIRED, True),
        (PAYMENT_PROCESSING, FAILED, True),
        (PAYMENT_PROCESSING, PAYMENT_RECEIVED, True),
        (PAYMENT_PROCESSING, OFFLINE_PAYMENT, True),
        (PAYMENT_PROCESSING, "custom-paid", True),
        (PAYMENT_RECEIVED, DISPATCHED, True),
        (PAYMENT_RECEIVED, REFUNDED, True),
        (DISPATCHED, REFUNDED, True),
        (DISPATCHED, VOIDED, True),
        (OFFLINE_PAYMENT, PAYMENT_RECEIVED, True),
        (AWAITING_PAYMENT, PAYMENT_RECEIVED, False),
        (AWAITING_PAYMENT, DISPATCHED, False),
        (PAYMENT_PROCESSING, EXPIRED, False),
        (PAYMENT_PROCESSING, PAYMENT_PROCESSING, False),
        (DISPATCHED, DISPATCHED, False),
        (DISPATCHED, PAYMENT_RECEIVED, False),
        (EXPIRED, PAYMENT_PROCESSING, False),
        (REFUNDED, DISPATCHED, False),
        (VOIDED, REFUNDED, False),
        (PAYMENT_RECEIVED, AWAITING_PAYMENT, False),
        (PAYMENT_RECEIVED, "Not A Status", False),
    ],
)
def test_transitions(current: str, target: str, allowed: bool) -> None:
    assert domain.can_transition(current, target) is allowed
    if allowed:
        assert domain.transition(current, target) == target
    else:
        with pytest.raises(domain.TransitionRefused):
            domain.transition(current, target)


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (AWAITING_PAYMENT, EXPIRED, True),
        (FAILED, EXPIRED, True),
        (PAYMENT_RECEIVED, DISPATCHED, True),
        (OFFLINE_PAYMENT, PAYMENT_RECEIVED, True),
        (AWAITING_PAYMENT, PAYMENT_PROCESSING, False),
        (AWAITING_PAYMENT, PAYMENT_RECEIVED, False),
        (PAYMENT_PROCESSING, FAILED, False),
        (PAYMENT_RECEIVED, REFUNDED, False),
        (PAYMENT_RECEIVED, VOIDED, False),
        (DISPATCHED, PAYMENT_RECEIVED, False),
        (PAYMENT_RECEIVED, "custom-paid", False),
    ],
)
def test_admin_transitions(current: str, target: str, allowed: bool) -> None:
    if allowed:
        assert domain.admin_transition(current, target) == target
    else:
        with pytest.raises(domain.TransitionRefused):
            domain.admin_transition(current, target)


def test_success_status_is_sanitised() -> None:
    assert domain.success_status("offline-payment") == "offline-payment"
    assert domain.success_status("custom-paid") == "custom-paid"
    for bad in (None, "", "dispatched", "failed", "awaiting-payment", "Bad Status", "x" * 60):
        assert domain.success_status(bad) == PAYMENT_RECEIVED


def test_editable_only_before_checkout() -> None:
    domain.ensure_editable(AWAITING_PAYMENT)
    domain.ensure_editable(FAILED)
    with pytest.raises(domain.NotEditable) as in_flight:
        domain.ensure_editable(PAYMENT_PROCESSING)
    assert in_flight.value.http_status == 409
    with pytest.raises(domain.NotEditable) as placed:
        domain.ensure_editable(PAYMENT_RECEIVED)
    assert (placed.value.http_status, placed.value.message) == (403, "This order has already been placed")


def test_totals() -> None:
    lines = [
        domain.LineAmounts(line_total=2500, tax_total=500, discount_total=0, is_shipping=False),
        domain.LineAmounts(line_total=999, tax_total=0, discount_total=100, is_shipping=False),
        domain.LineAmounts(line_total=595, tax_total=119, discount_total=0, is_shipping=True),
    ]
    result = domain.totals(lines)
    assert result == domain.Totals(
        sub_total=3399, delivery_total=595, discount_total=100, tax_total=619, order_total=3399 + 595 + 619
    )
    assert domain.totals([]) == domain.Totals(0, 0, 0, 0, 0)


def test_shipping_line_tax_is_floored() -> None:
    line = domain.shipping_line("Standard Delivery", "STD", "United Kingdom", 599)
    assert (line.line_total, line.tax_total, line.tax_rate) == (599, 119, 2000)  # 119.8 -> 119
    assert (line.description, line.option, line.sku) == ("Standard Delivery", "United Kingdom", "STD")


def test_references() -> None:
    period = domain.reference_period(datetime(2024, 3, 31, 23, 59, tzinfo=UTC))
    assert period == "2024-03"
    assert domain.reference("", period, 7) == "2024-03-0007"
    assert domain.reference("CANDY-", period, 12345) == "CANDY-2024-03-12345"
    assert domain.invoice_reference("2024-03-0007") == "#INV-2024-03-0007"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("United Kingdom", "GB"),
        ("united kingdom", "GB"),
        ("GB", "GB"),
        ("gb", "GB"),
        ("UK", "GB"),
        ("France", "FR"),
        ("FR", "FR"),
        ("Germany", "DE"),
        ("Narnia", None),
        ("", None),
        ("ZZ", None),
    ],
)
def test_country_code(value: str, code: str | None) -> None:
    assert country_code(value) == code


def test_address_view_shows_the_country_name() -> None:
    view = domain.address_view({"firstname": "A", "country": "GB"})
    assert view["country"] == "United Kingdom"
    assert view["firstname"] == "A"
    assert view["zip"] is None
    assert set(view) == set(domain.ADDRESS_FIELDS)
    assert domain.address_view(None)["country"] is None


def test_missing_for_checkout() -> None:
    complete = domain.Readiness(
        line_count=2,
        needs_shipping=True,
        has_shipping_address=True,
        has_shipping_price=True,
        has_billing_address=True,
        has_contact_email=True,
        order_total=1000,
    )
    assert domain.missing_for_checkout(complete) == {}
    empty = domain.Readiness(0, True, False, False, False, False, 0)
    assert domain.missing_for_checkout(empty) == {
        "lines": [domain.MSG_NO_LINES],
        "shipping_address": [domain.MSG_NO_SHIPPING_ADDRESS],
        "price_id": [domain.MSG_NO_SHIPPING_PRICE],
        "billing_address": [domain.MSG_NO_BILLING_ADDRESS],
        "contact.email": [domain.MSG_NO_EMAIL],
    }
    digital = domain.Readiness(1, False, False, False, True, True, 500)
    assert domain.missing_for_checkout(digital) == {}
