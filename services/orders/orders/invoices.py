"""`GET /orders/{id}/invoice`: a placed order's invoice as a PDF.

Upstream answered `{"data": {"encoding": "base64", "content": "<the PDF>"}}`; a client that asks
for `application/pdf` gets the document itself. The invoice is printed on its first request from
the order as stored (its lines are a snapshot taken when it was placed) and kept in `invoices`:
every later request answers the same document.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from fpdf import FPDF
from pydantic import BaseModel

from orders import domain, edits, queries
from orders.settings import OrdersSettings
from shared import http, money, runtime
from shared.http import NotFound

log = logging.getLogger(__name__)

PDF = "application/pdf"
NOT_INVOICED = "Only a placed order has an invoice"


class InvoiceOut(BaseModel):
    encoding: str
    content: str


class InvoiceEnvelope(BaseModel):
    data: InvoiceOut


# ---------------------------------------------------------------------------------------------
# What the invoice says (pure)


@dataclass(frozen=True)
class InvoiceLine:
    description: str
    quantity: int
    unit_price: int
    net: int  # line total before tax, after its discount
    tax_rate_bp: int
    discount: int


@dataclass(frozen=True)
class TaxBand:
    rate_bp: int
    net: int
    tax: int


@dataclass(frozen=True)
class Invoice:
    reference: str
    order_reference: str
    placed_on: str
    currency: str
    bill_to: list[str]
    ship_to: list[str]
    lines: list[InvoiceLine]
    shipping: InvoiceLine | None
    taxes: list[TaxBand]
    sub_total: int
    discount_total: int
    delivery_total: int
    tax_total: int
    order_total: int
    # The catalogue's currency and the rate the prices were converted from it at (units of
    # `currency` per unit of the base); no base for an order made before it was recorded.
    base_currency: str | None
    conversion: Decimal

    @property
    def conversion_note(self) -> str | None:
        """The line saying the prices were converted, for an order not in the base currency."""
        if self.base_currency is None or self.base_currency == self.currency:
            return None
        rate = money.rate_text(self.conversion)
        return f"Prices converted from {self.base_currency} at {rate} {self.currency} per {self.base_currency}"


def _address_lines(stored: Mapping[str, Any] | None) -> list[str]:
    view = domain.address_view(stored)
    name = " ".join(part for part in (view["firstname"], view["lastname"]) if part)
    parts = [
        name,
        view["company_name"],
        view["address"],
        view["address_two"],
        view["address_three"],
        view["city"],
        view["county"] or view["state"],
        view["zip"],
        view["country"],
        f"VAT {view['vat_no']}" if view["vat_no"] else None,
    ]
    return [part for part in parts if part]


def _invoice_line(row: Mapping[str, Any]) -> InvoiceLine:
    return InvoiceLine(
        description=row["description"] + (f" ({row['option']})" if row["option"] else ""),
        quantity=row["quantity"],
        unit_price=row["unit_price"],
        # A line's total is before its discount (`domain.totals`); its tax is on what is left.
        net=row["line_total"] - row["discount_total"],
        tax_rate_bp=row["tax_rate"],
        discount=row["discount_total"],
    )


def build_invoice(order: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]) -> Invoice:
    """The invoice of a placed order: its lines, shipping, the tax per rate and the totals."""
    goods = [_invoice_line(row) for row in lines if not row["is_shipping"]]
    shipping = next((_invoice_line(row) for row in lines if row["is_shipping"]), None)
    bands: dict[int, tuple[int, int]] = {}
    for row in lines:
        net, tax = bands.get(row["tax_rate"], (0, 0))
        bands[row["tax_rate"]] = (net + row["line_total"] - row["discount_total"], tax + row["tax_total"])
    return Invoice(
        reference=order["invoice_reference"] or "",
        order_reference=order["reference"] or "",
        placed_on=order["placed_at"].date().isoformat() if order["placed_at"] else "",
        currency=order["currency"],
        bill_to=_address_lines(order["billing_details"]),
        ship_to=_address_lines(order["shipping_details"]),
        lines=goods,
        shipping=shipping,
        taxes=[TaxBand(rate, net, tax) for rate, (net, tax) in sorted(bands.items())],
        sub_total=order["sub_total"],
        discount_total=order["discount_total"],
        delivery_total=order["delivery_total"],
        tax_total=order["tax_total"],
        order_total=order["order_total"],
        base_currency=order["base_currency"],
        conversion=order["conversion"],
    )


# ---------------------------------------------------------------------------------------------
# The PDF


@cache
def _font(path: str) -> Path | None:
    """The TrueType font that prints any name a shopper types; None when it is not installed."""
    font = Path(path)
    if font.is_file():
        return font
    log.warning("invoice font not found: names outside Latin-1 print as '?'", extra={"font": path})
    return None


class _Document(FPDF):
    def __init__(self, font_path: str) -> None:
        super().__init__(format="A4")
        font = _font(font_path)
        if font is not None:
            self.add_font("Body", "", str(font))
            self.body_font = "Body"
        else:
            self.body_font = "Helvetica"
        self.unicode = font is not None
        self.set_auto_page_break(auto=True, margin=15)
        self.add_page()

    def text_of(self, value: str) -> str:
        if self.unicode:
            return value
        return value.encode("latin-1", "replace").decode("latin-1")

    def row(self, text: str = "", size: int = 10, width: float = 0, align: str = "L", end: bool = True) -> None:
        self.set_font(self.body_font, size=size)
        self.cell(
            width,
            6,
            self.text_of(text),
            align=align,
            new_x="LMARGIN" if end else "RIGHT",
            new_y="NEXT" if end else "TOP",
        )


def render_invoice(invoice: Invoice, settings: OrdersSettings) -> bytes:
    doc = _Document(settings.invoice_font)
    doc.set_title(f"Invoice {invoice.reference}")

    def amount(value: int) -> str:
        return f"{money.to_major(value, invoice.currency)} {invoice.currency}"

    doc.row("INVOICE", size=16)
    for text in [settings.seller_name, *settings.seller_address.split("\n")]:
        doc.row(text)
    if settings.seller_vat_no:
        doc.row(f"VAT {settings.seller_vat_no}")
    doc.row()
    doc.row(f"Invoice {invoice.reference}")
    doc.row(f"Order {invoice.order_reference}")
    doc.row(f"Date {invoice.placed_on}")
    doc.row()
    doc.row("Bill to", size=11)
    for text in invoice.bill_to:
        doc.row(text)
    if invoice.ship_to:
        doc.row()
        doc.row("Ship to", size=11)
        for text in invoice.ship_to:
            doc.row(text)
    doc.row()
    widths = (80, 15, 30, 20, 35)
    for text, width in zip(("Item", "Qty", "Unit price", "Tax", "Net"), widths, strict=True):
        doc.row(text, size=10, width=width, end=width == widths[-1])
    rows = [*invoice.lines, *([invoice.shipping] if invoice.shipping else [])]
    for row in rows:
        cells = (
            row.description[:60],
            str(row.quantity),
            amount(row.unit_price),
            f"{money.rate_percent(row.tax_rate_bp)}%",
            amount(row.net),
        )
        for text, width in zip(cells, widths, strict=True):
            doc.row(text, width=width, end=width == widths[-1])
        if row.discount:
            doc.row(f"    Discount -{amount(row.discount)}")
    doc.row()
    for band in invoice.taxes:
        doc.row(f"Tax at {money.rate_percent(band.rate_bp)}% on {amount(band.net)}: {amount(band.tax)}")
    doc.row()
    # Line totals are after their discounts: the discount total is shown, not subtracted again.
    if invoice.discount_total:
        doc.row(f"Discounts (included above): -{amount(invoice.discount_total)}", align="R")
    for label, value in (
        ("Sub total", invoice.sub_total),
        ("Shipping", invoice.delivery_total),
        ("Tax", invoice.tax_total),
        ("Total", invoice.order_total),
    ):
        doc.row(f"{label}: {amount(value)}", align="R")
    if invoice.conversion_note:
        doc.row()
        doc.row(invoice.conversion_note)
    return bytes(doc.output())


# ---------------------------------------------------------------------------------------------
# The route


async def issued_invoice(request: web.Request, order: Mapping[str, Any]) -> bytes:
    """The order's invoice as first issued; printed now when this is the first request."""
    pool = request.app[runtime.POOL]
    document = await queries.get_invoice_document(pool, order["id"])
    if document is not None:
        return document
    lines = await queries.get_lines_for(pool, [order["id"]])
    invoice = build_invoice(order, lines)
    # Printing takes a quarter of a second of CPU (font subsetting): off the event loop, so that
    # the service's other requests are not held up.
    printed = await asyncio.to_thread(render_invoice, invoice, request.app[runtime.SETTINGS])
    return await queries.issue_invoice(pool, order["id"], invoice.reference, printed)


async def get_invoice(request: web.Request) -> web.Response:
    order = await edits.read_order(request, http.path_id(request))
    if not domain.is_placed(order["status"]):
        raise NotFound(NOT_INVOICED)
    document = await issued_invoice(request, order)
    if PDF in request.headers.get("Accept", ""):
        filename = (order["invoice_reference"] or order["id"]).lstrip("#")
        return web.Response(
            body=document, content_type=PDF, headers={"Content-Disposition": f'inline; filename="{filename}.pdf"'}
        )
    content = base64.b64encode(document).decode()
    return http.model_response(InvoiceEnvelope(data=InvoiceOut(encoding="base64", content=content)))
