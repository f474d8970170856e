"""`GET /orders/{id}/invoice` through the gateway: a placed order's invoice, as a PDF whose text
says who sold what to whom, for how much, with the tax per rate."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import aiohttp
import pypdf

from bench.shopper import Shopper
from orders.settings import OrdersSettings
from shared import money
from tests.e2e.test_checkout import create_product, get_order, variant_of
from tests.support import Stack


def pdf_text(document: bytes) -> str:
    assert document.startswith(b"%PDF-")
    reader = pypdf.PdfReader(io.BytesIO(document))
    return "\n".join(page.extract_text() for page in reader.pages)


async def placed_order(session: aiohttp.ClientSession, stack: Stack) -> dict[str, Any]:
    standard = variant_of(await create_product(session, stack, inventory=5, price="12.50"))
    zero_rated = variant_of(await create_product(session, stack, inventory=5, price="8.00", tax_rate_bp=0))
    outcome = await Shopper(session, stack.gateway).checkout(
        [(standard["id"], 2), (zero_rated["id"], 1)], payment_token="fake-valid-nonce"
    )
    assert outcome.placed, outcome.error
    return await get_order(session, stack, outcome.order_id)


def amount(value: int) -> str:
    return f"{money.to_major(value, 'GBP')} GBP"


async def test_the_invoice_of_a_placed_order_lists_seller_lines_taxes_and_totals(stack: Stack, session) -> None:
    order = await placed_order(session, stack)
    url = f"{stack.gateway}/orders/{order['id']}/invoice"

    async with session.get(url, headers={"Accept": "application/pdf"}) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "application/pdf"
        document = await response.read()
    text = pdf_text(document)

    settings = OrdersSettings()
    assert settings.seller_name in text
    assert order["invoice_reference"] in text and order["reference"] in text
    assert "Ada" in text  # the billing address
    goods = [line for line in order["lines"]["data"] if not line["is_shipping"]]
    for line in goods:
        assert line["description"][:40] in text
        assert amount(line["line_total"]) in text
    shipping = order["shipping"]["data"]
    assert shipping is not None and amount(shipping["line_total"]) in text
    # Tax per rate: the 20% band carries the standard line and the shipping, the 0% band the other.
    standard_net = sum(line["line_total"] for line in order["lines"]["data"] if line["tax_rate"] == 20)
    standard_tax = sum(line["tax_total"] for line in order["lines"]["data"] if line["tax_rate"] == 20)
    assert f"Tax at 20% on {amount(standard_net)}: {amount(standard_tax)}" in text
    assert f"Tax at 0% on {amount(800)}: {amount(0)}" in text
    assert f"Total: {amount(order['order_total'])}" in text

    # Upstream's shape: the same document, base64 in `data.content`.
    async with session.get(url) as response:
        assert response.status == 200
        body = (await response.json())["data"]
    assert body["encoding"] == "base64"
    # Issued once: the same bytes every time (an issued invoice does not change).
    assert base64.b64decode(body["content"]) == document


async def test_concurrent_first_requests_issue_one_invoice(stack: Stack, session, admin_db) -> None:
    order = await placed_order(session, stack)
    url = f"{stack.gateway}/orders/{order['id']}/invoice"

    async def fetch() -> bytes:
        async with session.get(url, headers={"Accept": "application/pdf"}) as response:
            assert response.status == 200
            return await response.read()

    documents = await asyncio.gather(*(fetch() for _ in range(4)))
    assert len(set(documents)) == 1
    stored = await admin_db.fetch("SELECT document FROM orders.invoices WHERE order_id = $1", order["id"])
    assert [row["document"] for row in stored] == documents[:1]


async def test_an_order_that_is_not_placed_has_no_invoice(stack: Stack, session) -> None:
    variant = variant_of(await create_product(session, stack, inventory=5))
    async with session.post(f"{stack.gateway}/baskets", json={"variants": [{"id": variant["id"], "quantity": 1}]}) as r:
        basket = (await r.json())["data"]
    async with session.post(f"{stack.gateway}/orders", json={"basket_id": basket["id"]}) as r:
        order = (await r.json())["data"]

    for order_id in (order["id"], "0" * 24):
        async with session.get(f"{stack.gateway}/orders/{order_id}/invoice") as response:
            assert response.status == 404
            assert set(await response.json()) == {"error"}
