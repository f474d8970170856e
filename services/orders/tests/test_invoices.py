"""The invoice's content (pure): tax per rate, the shipping line, addresses; and the PDF it prints."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pypdf

from orders.invoices import TaxBand, build_invoice, render_invoice
from orders.settings import OrdersSettings


def row(sku: str, quantity: int, unit: int, rate_bp: int, *, shipping: bool = False, discount: int = 0) -> dict:
    # As orders keeps a line: its total before its discount, its tax on what is left.
    net = quantity * unit - discount
    return {
        "description": sku,
        "option": None,
        "quantity": quantity,
        "unit_price": unit,
        "line_total": quantity * unit,
        "tax_total": net * rate_bp // 10_000,
        "tax_rate": rate_bp,
        "discount_total": discount,
        "is_shipping": shipping,
    }


ADDRESS = {"firstname": "Zoë", "lastname": "Łukasiewicz", "address": "1 Rue", "city": "Paris", "country": "FR"}


def order(lines: list[dict[str, Any]]) -> dict[str, Any]:
    sub = sum(line["line_total"] - line["discount_total"] for line in lines if not line["is_shipping"])
    delivery = sum(line["line_total"] - line["discount_total"] for line in lines if line["is_shipping"])
    tax = sum(line["tax_total"] for line in lines)
    return {
        "invoice_reference": "#INV-2026-12-0001",
        "reference": "2026-12-0001",
        "placed_at": datetime(2026, 12, 1, 10, tzinfo=UTC),
        "currency": "GBP",
        "base_currency": "GBP",
        "conversion": Decimal(1),
        "billing_details": ADDRESS,
        "shipping_details": ADDRESS,
        "sub_total": sub,
        "discount_total": sum(line["discount_total"] for line in lines if not line["is_shipping"]),
        "delivery_total": delivery,
        "tax_total": tax,
        "order_total": sub + delivery + tax,
    }


LINES = [
    row("SHIRT", 2, 1250, 2000, discount=250),
    row("BOOK", 1, 800, 0),
    row("MUG", 1, 600, 2000),
    row("Standard delivery", 1, 395, 2000, shipping=True),
]


def test_taxes_are_summed_per_rate_including_shipping() -> None:
    invoice = build_invoice(order(LINES), LINES)
    assert invoice.taxes == [TaxBand(0, 800, 0), TaxBand(2000, 2250 + 600 + 395, 450 + 120 + 79)]
    assert sum(band.tax for band in invoice.taxes) == invoice.tax_total
    assert [line.description for line in invoice.lines] == ["SHIRT", "BOOK", "MUG"]
    assert invoice.shipping is not None and invoice.shipping.net == 395
    assert invoice.bill_to[0] == "Zoë Łukasiewicz" and invoice.bill_to[-1] == "France"
    assert invoice.placed_on == "2026-12-01"


def test_the_pdf_prints_any_name_and_the_discount() -> None:
    invoice = build_invoice(order(LINES), LINES)
    text = "\n".join(
        page.extract_text() for page in pypdf.PdfReader(io.BytesIO(render_invoice(invoice, OrdersSettings()))).pages
    )
    assert "Zoë Łukasiewicz" in text
    assert "Discount -2.50 GBP" in text
    assert f"Total: {invoice.order_total / 100:.2f} GBP" in text


def test_without_the_font_names_still_print_in_latin_1() -> None:
    invoice = build_invoice(order(LINES), LINES)
    settings = OrdersSettings(invoice_font="/nonexistent/font.ttf")
    text = pypdf.PdfReader(io.BytesIO(render_invoice(invoice, settings))).pages[0].extract_text()
    assert "Zoë ?ukasiewicz" in text


def pdf_text(invoice: Any) -> str:
    document = pypdf.PdfReader(io.BytesIO(render_invoice(invoice, OrdersSettings())))
    return "\n".join(page.extract_text() for page in document.pages)


def test_an_order_in_the_base_currency_says_nothing_of_a_conversion() -> None:
    assert build_invoice(order(LINES), LINES).conversion_note is None
    # Nor one made before the base was recorded.
    old = order(LINES) | {"base_currency": None}
    assert "converted" not in pdf_text(build_invoice(old, LINES))


def test_a_converted_order_states_its_rate_and_prints_in_its_own_minor_units() -> None:
    """Yen have no minor unit: 1250 is 1250 JPY, not 12.50."""
    yen = order(LINES) | {"currency": "JPY", "conversion": Decimal("181.50000000")}
    invoice = build_invoice(yen, LINES)
    assert invoice.conversion_note == "Prices converted from GBP at 181.5 JPY per GBP"
    text = pdf_text(invoice)
    assert "Prices converted from GBP at 181.5 JPY per GBP" in text
    assert f"Total: {invoice.order_total} JPY" in text
    assert "Discount -250 JPY" in text
