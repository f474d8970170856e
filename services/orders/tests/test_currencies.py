"""Orders in another currency than the catalogue's: the order keeps the currency of its basket's
snapshot and the rate its prices were converted at (`conversion`), is quoted shipping in its own
currency, is charged in it, and its invoice says what the prices were converted from."""

from __future__ import annotations

import io
from typing import Any

import asyncpg
import pypdf
import pytest

from services.orders.tests.test_saga import URL, Script, process
from services.orders.tests.testkit import ADDRESS, FakeShipping, Peer, Store, line

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

# 16.66 GBP in the catalogue is 19.41 EUR at 1.165: the basket's lines come already converted.
IN_EUROS = {"currency": "EUR", "base_currency": "GBP", "exchange_rate": "1.165"}


async def call(client: Any, method: str, path: str, body: Any = None) -> dict[str, Any]:
    response = await client.request(method, f"{URL}{path}", json=body)
    assert response.status == 200, await response.text()
    return (await response.json())["data"]


async def test_an_order_in_euros_keeps_its_rate_is_charged_in_euros_and_its_invoice_says_so(
    client: Any, store: Store, shipping: FakeShipping, peers: dict[str, Peer], pool: asyncpg.Pool
) -> None:
    script = Script(peers)
    basket_id = store.put([line("A", 2, 1941)], **IN_EUROS)
    order = await call(client, "POST", "", {"basket_id": basket_id})
    assert (order["currency"], order["conversion"]) == ("EUR", "1.165")
    assert (order["sub_total"], order["tax_total"], order["order_total"]) == (3882, 776, 4658)
    row = await pool.fetchrow("SELECT base_currency, conversion FROM orders WHERE id = $1", order["id"])
    assert (row["base_currency"], str(row["conversion"])) == ("GBP", "1.16500000")

    # Shipping is quoted in euros, and only euro prices are offered.
    await call(client, "PUT", f"/{order['id']}/shipping/address", ADDRESS)
    methods = await call(client, "GET", f"/{order['id']}/shipping/methods")
    assert [(p["id"], p["rate"], p["currency"]) for p in methods] == [(shipping.uk_standard_eur.id, 575, "EUR")]
    assert shipping.requests[-1].currency == "EUR"
    for path, body in (
        ("shipping/cost", {"price_id": shipping.uk_standard_eur.id}),
        ("billing/address", ADDRESS),
        ("contact", {"email": "sweets@example.com"}),
    ):
        order = await call(client, "PUT", f"/{order['id']}/{path}", body)
    assert (order["sub_total"], order["delivery_total"], order["tax_total"]) == (3882, 575, 776 + 115)
    assert order["order_total"] == 3882 + 575 + 891 == 5348

    # Charged in euros, the order's total; placed with its currency and rate as they were.
    response = await process(client, order["id"])
    assert response.status == 200, await response.text()
    placed = (await response.json())["data"]
    [charge] = script.charges
    assert (charge.amount, charge.currency) == (5348, "EUR")
    assert (placed["currency"], placed["conversion"], placed["order_total"]) == ("EUR", "1.165", 5348)
    [tx] = placed["transactions"]["data"]
    assert (tx["amount"], tx["currency"]) == (5348, "EUR")

    response = await client.get(f"{URL}/{order['id']}/invoice", headers={"Accept": "application/pdf"})
    assert response.status == 200, await response.text()
    pdf = pypdf.PdfReader(io.BytesIO(await response.read()))
    text = "\n".join(page.extract_text() for page in pdf.pages)
    assert "Prices converted from GBP at 1.165 EUR per GBP" in text
    assert "Total: 53.48 EUR" in text
    assert "GBP" not in text.replace("Prices converted from GBP at 1.165 EUR per GBP", "")


async def test_a_resync_takes_the_baskets_new_currency_and_rate(
    client: Any, store: Store, shipping: FakeShipping
) -> None:
    """The basket changed currency before checkout (PUT /baskets/{id}): POST /orders again brings
    the order to the basket's currency and rate, and drops a shipping price of the old currency."""
    basket_id = store.put([line("A", 2, 1941)], **IN_EUROS)
    order = await call(client, "POST", "", {"basket_id": basket_id})
    await call(client, "PUT", f"/{order['id']}/shipping/address", ADDRESS)
    order = await call(client, "PUT", f"/{order['id']}/shipping/cost", {"price_id": shipping.uk_standard_eur.id})
    assert (order["currency"], order["delivery_total"]) == ("EUR", 575)

    store.put([line("A", 2, 1666)], basket_id=basket_id, currency="GBP", base_currency="GBP")
    synced = await call(client, "POST", "", {"basket_id": basket_id})
    assert synced["id"] == order["id"]
    assert (synced["currency"], synced["conversion"]) == ("GBP", "1")
    assert (synced["sub_total"], synced["delivery_total"], synced["shipping_method"]) == (3332, 0, None)

    store.put([line("A", 2, 1941)], basket_id=basket_id, **IN_EUROS)
    again = await call(client, "POST", "", {"basket_id": basket_id})
    assert (again["currency"], again["conversion"], again["sub_total"]) == ("EUR", "1.165", 3882)
