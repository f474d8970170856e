"""Several currencies (issue 18): the conversion rule as pure arithmetic, the admin's currencies,
and baskets, products and snapshots in a second currency against the real service."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from basket import pricing
from basket.catalogue import _minor_units
from basket.consumers import on_get_basket_snapshot
from services.basket.tests.testkit import API, admin, create_variant, event_tap
from shared import money
from shared.contracts import GetBasketSnapshot
from shared.http import ValidationFailed

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

EUR = pricing.Conversion("GBP", "EUR", Decimal("1.165"))
NOW = datetime(2026, 6, 1, tzinfo=UTC)

# ---------------------------------------------------------------------------------------------
# The rule, as arithmetic


@pytest.mark.parametrize(
    ("amount", "rate", "source", "target", "expected"),
    [
        (1999, "1.165", "GBP", "EUR", 2329),  # 23.28835 -> 23.29
        (1000, "1.165", "GBP", "EUR", 1165),  # exact
        (1, "0.5", "GBP", "EUR", 1),  # 0.005 -> 0.01: half up, never half to even
        (3, "0.5", "GBP", "EUR", 2),  # 0.015 -> 0.02
        (1, "0.4", "GBP", "EUR", 0),  # 0.004 -> 0.00
        (1999, "181.5", "GBP", "JPY", 3628),  # JPY has no minor unit: 3628.185 -> 3628
        (1999, "181.52", "GBP", "JPY", 3629),  # 3628.5848 -> 3629
        (1999, "0.3845", "GBP", "KWD", 7686),  # KWD has three: 7.686155 -> 7.686
        (500, "0.00860", "JPY", "GBP", 430),  # from a currency without a minor unit: 4.30
        (1999, "1", "GBP", "GBP", 1999),
        (0, "1.165", "GBP", "EUR", 0),
    ],
)
def test_convert_rounds_half_up_to_the_targets_minor_unit(
    amount: int, rate: str, source: str, target: str, expected: int
) -> None:
    assert money.convert(amount, Decimal(rate), source, target) == expected


def test_convert_refuses_what_is_not_a_price_or_a_rate() -> None:
    for amount, rate in [(-1, "1.1"), (100, "0"), (100, "-1")]:
        with pytest.raises(ValueError):
            money.convert(amount, Decimal(rate), "GBP", "EUR")


def test_minor_units_come_from_iso_4217() -> None:
    assert [money.exponent(code) for code in ("GBP", "EUR", "USD", "JPY", "KWD", "CLP", "jpy")] == [2, 2, 2, 0, 3, 0, 0]
    assert money.to_major(3628, "JPY") == Decimal(3628)
    assert money.from_major("7.686", "KWD") == 7686
    with pytest.raises(ValueError):
        money.from_major("10.5", "JPY")
    assert money.is_currency("EUR") and not money.is_currency("eur") and not money.is_currency("ABC")


def line(unit_price: int, quantity: int, tax_rate_bp: int = 2000, variant_id: str = "v1") -> pricing.PricingLine:
    return pricing.PricingLine(variant_id, "p1", EUR.price(unit_price), quantity, tax_rate_bp)


def terms(**fields: Any) -> pricing.DiscountTerms:
    base: dict[str, Any] = dict(
        id="d1",
        name="Sale",
        coupon="SALE",
        enabled=True,
        priority=0,
        stop_rules=False,
        start_at=None,
        end_at=None,
        currency="GBP",
        min_basket=0,
        product_ids=frozenset(),
        variant_ids=frozenset(),
        percentage_bp=None,
        fixed_amount=None,
        free_shipping=False,
    )
    return pricing.DiscountTerms(**(base | fields))


def test_a_basket_in_euros_is_converted_per_unit_then_taxed_per_line() -> None:
    # 19.99 GBP is 23.29 EUR; three of them 69.87; 20% tax 13.974 -> 13.97 (floored per line).
    priced = pricing.price_basket([line(1999, 3), line(999, 1, 0, "v2")], [], currency="EUR", now=NOW)
    assert [(a.unit_price, a.line_total, a.tax) for a in priced.lines] == [(2329, 6987, 1397), (1164, 1164, 0)]
    assert priced.totals == pricing.Totals(sub_total=8151, tax_total=1397, discount_total=0, total=9548)


def test_discounts_in_a_second_currency() -> None:
    lines = [line(1999, 3), line(999, 1, 0, "v2")]  # 69.87 + 11.64 = 81.51 EUR
    percentage = EUR.terms(terms(id="d1", percentage_bp=1000))  # 10%: 8.151 -> 8.15
    fixed = EUR.terms(terms(id="d2", fixed_amount=500, coupon=None))  # 5 GBP is 5.83 EUR (5.825 half up)
    shipping = EUR.terms(terms(id="d3", free_shipping=True, coupon=None, min_basket=7000))  # 70 GBP = 81.55 EUR
    assert (fixed.fixed_amount, fixed.currency, shipping.min_basket) == (583, "EUR", 8155)

    priced = pricing.price_basket(lines, [percentage, fixed, shipping], currency="EUR", now=NOW)
    # 10% of 81.51 = 8.15, spread 6.99 / 1.16 (in proportion, largest remainder); then 5.83 off what
    # is left (62.88 and 10.48), 5.00 / 0.83. Tax is 20% of the first line's 57.88 left: 11.576 -> 11.57.
    assert [(d.id, d.amount) for d in priced.applied] == [("d1", 815), ("d2", 583)]
    assert [(a.discount, a.tax) for a in priced.lines] == [(699 + 500, 1157), (116 + 83, 0)]
    assert priced.totals == pricing.Totals(sub_total=8151, tax_total=1157, discount_total=1398, total=7910)
    assert not priced.free_shipping  # 81.51 EUR is below 70 GBP converted (81.55 EUR)

    more = pricing.price_basket([*lines, line(10, 1, 0, "v3")], [shipping], currency="EUR", now=NOW)
    assert more.free_shipping  # 81.51 + 0.12 = 81.63 EUR


def test_a_discount_set_in_another_currency_applies_only_in_it() -> None:
    dollars = terms(currency="USD", fixed_amount=500)
    assert EUR.terms(dollars) == dollars
    refusal = pricing.basket_refusal(dollars, [line(1999, 1)], "EUR", NOW)
    assert refusal == pricing.msg_wrong_currency(dollars)
    # In its base currency a conversion changes nothing.
    assert pricing.Conversion.none("GBP").terms(terms(fixed_amount=500)) == terms(fixed_amount=500)


# ---------------------------------------------------------------------------------------------
# Against the service


@pytest.fixture
async def currencies(admin_db: asyncpg.Connection) -> dict[str, str]:
    """Euros at 1.165 and yen at 181.5, enabled (made or reset straight in the table, as a
    fixture may: the admin routes are tested below)."""
    ids = {}
    for code, rate, format_ in [("EUR", "1.165", "€{price}"), ("JPY", "181.5", "¥{price}")]:
        ids[code] = await admin_db.fetchval(
            """
            INSERT INTO basket.currencies (id, code, name, exchange_rate, format, enabled)
            VALUES ($1, $2, $2, $3, $4, true)
            ON CONFLICT (code) DO UPDATE SET exchange_rate = EXCLUDED.exchange_rate, enabled = true
            RETURNING id
            """,
            f"test{code.lower()}currency",
            code,
            Decimal(rate),
            format_,
        )
    return ids


async def basket_in(client: Any, variant_id: str, quantity: int, **body: Any) -> tuple[int, Any]:
    response = await client.post(
        f"{API}/baskets?include=lines", json={"variants": [{"id": variant_id, "quantity": quantity}], **body}
    )
    return response.status, await response.json()


async def test_a_basket_in_a_second_currency(
    client: Any, pool: asyncpg.Pool, infra: Any, currencies: dict[str, str]
) -> None:
    variant = await create_variant(client, price="19.99", tax_rate_bp=2000)
    status, body = await basket_in(client, variant["id"], 3, currency="eur")
    assert status == 200, body
    basket = body["data"]
    assert (basket["currency"], basket["sub_total"], basket["tax_total"], basket["total"]) == (
        "EUR",
        69.87,
        13.97,
        83.84,
    )
    assert basket["lines"]["data"][0]["unit_price"] == 23.29

    # Shown in yen on request (header or query), the basket stays in euros.
    for headers, query in [({"X-CANDY-CURRENCY": "JPY"}, ""), ({}, "&currency=jpy")]:
        response = await client.get(f"{API}/baskets/{basket['id']}?include=lines{query}", headers=headers)
        shown = (await response.json())["data"]
        assert (shown["currency"], shown["lines"]["data"][0]["unit_price"], shown["sub_total"]) == ("JPY", 3628, 10884)
    response = await client.get(f"{API}/baskets/{basket['id']}?include=lines")
    assert (await response.json())["data"] == basket

    # Its snapshot (what the order and the charge are made from) is in its own currency.
    reply = await on_get_basket_snapshot(pool, GetBasketSnapshot(basket_id=basket["id"]), base_currency="GBP")
    assert reply.basket is not None
    snapshot = reply.basket
    assert (snapshot.currency, snapshot.base_currency, snapshot.exchange_rate) == ("EUR", "GBP", "1.165")
    assert (snapshot.sub_total, snapshot.tax_total, snapshot.total) == (6987, 1397, 8384)
    assert snapshot.lines[0].unit_price == 2329

    # PUT /baskets/{id} moves it to yen, announced in yen.
    async with event_tap(infra, "basket.changed.v1") as tap:
        response = await client.put(f"{API}/baskets/{basket['id']}?include=lines", json={"currency": "JPY"})
        assert response.status == 200, await response.text()
        moved = (await response.json())["data"]
        assert (moved["currency"], moved["total"]) == ("JPY", 13060)  # 3 x 3628 + 20% tax floored (2176)
        event = await tap.wait_for(lambda body: body["payload"]["basket_id"] == basket["id"])
    assert (event["payload"]["currency"], event["payload"]["total"]) == ("JPY", 13060)


async def test_a_new_basket_takes_the_header_then_the_default(
    client: Any, admin_db: asyncpg.Connection, currencies: dict[str, str]
) -> None:
    variant = await create_variant(client, price="10.00")
    response = await client.post(
        f"{API}/baskets", json={"variants": [{"id": variant["id"], "quantity": 1}]}, headers={"X-CANDY-CURRENCY": "EUR"}
    )
    assert (await response.json())["data"]["currency"] == "EUR"
    response = await client.post(
        f"{API}/basket-lines?currency=JPY", json={"variants": [{"id": variant["id"], "quantity": 1}]}
    )
    assert (await response.json())["data"]["currency"] == "JPY"
    status, body = await basket_in(client, variant["id"], 1)
    default = await admin_db.fetchval("SELECT code FROM basket.currencies WHERE is_default")
    assert (status, body["data"]["currency"]) == (200, default)


async def test_a_disabled_or_unknown_currency_is_refused_and_changes_nothing(
    client: Any, admin_db: asyncpg.Connection, currencies: dict[str, str]
) -> None:
    variant = await create_variant(client, price="10.00")
    _, body = await basket_in(client, variant["id"], 1, currency="EUR")
    basket = body["data"]
    version = await admin_db.fetchval("SELECT version FROM basket.baskets WHERE id = $1", basket["id"])
    baskets = await admin_db.fetchval("SELECT count(*) FROM basket.baskets")
    invalid = {"currency": ["The selected currency is invalid."]}
    await admin_db.execute("UPDATE basket.currencies SET enabled = false WHERE code = 'JPY'")
    try:
        for code in ("JPY", "XTS", "ZZZ", "12"):
            response = await client.put(f"{API}/baskets/{basket['id']}", json={"currency": code})
            assert (response.status, await response.json()) == (422, invalid), code
            status, refused = await basket_in(client, variant["id"], 1, currency=code)
            assert (status, refused) == (422, invalid)
            response = await client.get(f"{API}/baskets/{basket['id']}", headers={"X-CANDY-CURRENCY": code})
            assert (response.status, await response.json()) == (422, invalid)
            response = await client.get(f"{API}/products/variants/{variant['id']}?currency={code}")
            assert (response.status, await response.json()) == (422, invalid)
        # Read from the query string, not a body: checked before the database sees it.
        for query in ("currency=E%00R", "currency=" + "EURO" * 100):
            response = await client.get(f"{API}/baskets/{basket['id']}?{query}")
            assert (response.status, await response.json()) == (422, invalid), query
    finally:
        await admin_db.execute("UPDATE basket.currencies SET enabled = true WHERE code = 'JPY'")
    assert await admin_db.fetchval("SELECT version FROM basket.baskets WHERE id = $1", basket["id"]) == version
    assert await admin_db.fetchval("SELECT count(*) FROM basket.baskets") == baskets


async def test_catalogue_reads_in_a_second_currency(client: Any, currencies: dict[str, str]) -> None:
    variant = await create_variant(client, price="19.99", tax_rate_bp=2000)
    response = await client.get(f"{API}/products/variants/{variant['id']}", headers={"X-CANDY-CURRENCY": "EUR"})
    shown = (await response.json())["data"]
    assert (shown["currency"], shown["price"], shown["unit_tax"]) == ("EUR", 23.29, 4.65)
    response = await client.get(f"{API}/products/{variant['product_id']}?include=variants&currency=JPY")
    shown = (await response.json())["data"]["variants"]["data"][0]
    assert (shown["currency"], shown["price"]) == ("JPY", 3628)
    response = await client.get(f"{API}/products/variants/{variant['id']}")
    assert ((await response.json())["data"]["currency"], (await response.json())["data"]["price"]) == ("GBP", 19.99)


async def test_a_fixed_coupon_in_a_basket_in_euros(client: Any, currencies: dict[str, str]) -> None:
    variant = await create_variant(client, price="40.00", tax_rate_bp=2000)
    coupon = f"EUR{variant['id'][:8]}".upper()
    response = await client.post(
        f"{API}/discounts",
        json={"name": "Five off", "coupon": coupon, "fixed_amount": 5, "min_basket": 45},
        headers=admin(),
    )
    assert response.status == 200, await response.text()
    _, body = await basket_in(client, variant["id"], 1, currency="EUR")  # 46.60 EUR, above 45 GBP (52.43 EUR)? no
    response = await client.post(f"{API}/baskets/{body['data']['id']}/discounts", json={"coupon": coupon})
    message = "The basket must come to at least 52.43 EUR before tax to use this coupon."
    assert (response.status, await response.json()) == (422, {"coupon": [message]})
    _, body = await basket_in(client, variant["id"], 2, currency="EUR")  # 93.20 EUR
    response = await client.post(
        f"{API}/baskets/{body['data']['id']}/discounts?include=discounts", json={"coupon": coupon}
    )
    priced = (await response.json())["data"]
    # 5 GBP is 5.83 EUR off; tax on 87.37 is 17.474 -> 17.47.
    assert (priced["discount_total"], priced["tax_total"], priced["total"]) == (5.83, 17.47, 104.84)
    assert priced["discounts"]["data"][0]["amount"] == 5.83


# ---------------------------------------------------------------------------------------------
# The admin's currencies


async def test_currencies_admin(client: Any, admin_db: asyncpg.Connection, currencies: dict[str, str]) -> None:
    await admin_db.execute("DELETE FROM basket.currencies WHERE code = 'CHF'")
    response = await client.post(f"{API}/currencies", json={"code": "chf", "exchange_rate": "1.1234"}, headers=admin())
    assert response.status == 200, await response.text()
    franc = (await response.json())["data"]
    assert {
        k: franc[k] for k in ("code", "name", "exchange_rate", "format", "enabled", "default", "decimal_places")
    } == {
        "code": "CHF",
        "name": "Swiss Franc",
        "exchange_rate": "1.1234",
        "format": "CHF{price}",
        "enabled": True,
        "default": False,
        "decimal_places": 2,
    }
    listed = await (await client.get(f"{API}/currencies?per_page=100")).json()
    assert franc in listed["data"] and listed["data"][0]["default"] is True
    assert listed["meta"]["total"] == len(listed["data"])

    for body, errors in [
        ({"code": "CHF", "exchange_rate": 1}, {"code": ["The code has already been taken."]}),
        ({"code": "ABC", "exchange_rate": 1}, {"code": ["The code must be an ISO 4217 currency code."]}),
        ({"code": "SEK", "exchange_rate": 0}, {"exchange_rate": ["Input should be greater than 0"]}),
        (
            {"code": "SEK", "exchange_rate": "1000001"},
            {"exchange_rate": ["Input should be less than or equal to 1000000"]},
        ),
        (
            {"code": "SEK", "exchange_rate": 1, "format": "kr"},
            {"format": ["String should match pattern '\\{price\\}'"]},
        ),
        (
            {"code": "SEK", "exchange_rate": 1, "default": True, "enabled": False},
            {"enabled": ["The default currency cannot be disabled: make another one the default first."]},
        ),
    ]:
        response = await client.post(f"{API}/currencies", json=body, headers=admin())
        assert (response.status, await response.json()) == (422, errors), body
    assert await admin_db.fetchval("SELECT count(*) FROM basket.currencies WHERE code = 'SEK'") == 0
    response = await client.post(f"{API}/currencies", json={"code": "SEK", "exchange_rate": 1})
    assert response.status == 401

    # Compare-and-set on the version; a rate change shows at once.
    url = f"{API}/currencies/{franc['id']}"
    response = await client.put(url, json={"exchange_rate": 1.2, "version": franc["version"]}, headers=admin())
    assert (response.status, (await response.json())["data"]["exchange_rate"]) == (200, "1.2")
    response = await client.put(url, json={"exchange_rate": 1.3, "version": franc["version"]}, headers=admin())
    assert response.status == 409
    variant = await create_variant(client, price="10.00", tax_rate_bp=0)
    response = await client.get(f"{API}/products/variants/{variant['id']}?currency=CHF")
    assert (await response.json())["data"]["price"] == 12

    # The base keeps rate 1 and stays enabled; one default at a time.
    base = next(row for row in listed["data"] if row["code"] == "GBP")
    response = await client.put(f"{API}/currencies/{base['id']}", json={"exchange_rate": 2}, headers=admin())
    assert (response.status, await response.json()) == (
        422,
        {"exchange_rate": ["The base currency's exchange rate is 1."]},
    )
    default = next(row for row in listed["data"] if row["default"])
    try:
        response = await client.put(url, json={"default": True}, headers=admin())
        assert (await response.json())["data"]["default"] is True
        assert await admin_db.fetchval("SELECT array_agg(code) FROM basket.currencies WHERE is_default") == ["CHF"]
        response = await client.put(url, json={"enabled": False}, headers=admin())
        assert response.status == 422
        response = await client.delete(url, headers=admin())
        assert response.status == 422
    finally:
        await client.put(f"{API}/currencies/{default['id']}", json={"default": True}, headers=admin())
    assert await admin_db.fetchval("SELECT array_agg(code) FROM basket.currencies WHERE is_default") == [
        default["code"]
    ]

    # In use by a basket: disable it, do not delete it; unused: deleted.
    _, body = await basket_in(client, variant["id"], 1, currency="CHF")
    response = await client.delete(url, headers=admin())
    assert (response.status, await response.json()) == (
        422,
        {"code": ["This currency is used by baskets or discounts: disable it instead."]},
    )
    await admin_db.execute("DELETE FROM basket.baskets WHERE id = $1", body["data"]["id"])
    assert (await client.delete(url, headers=admin())).status == 204
    assert (await client.get(url, headers=admin())).status == 404
    for path in ("CHF", "chf"):
        assert (await client.get(f"{API}/currencies/{path}")).status == 404


async def test_a_currency_is_read_by_id_or_by_code_without_a_token(client: Any, currencies: dict[str, str]) -> None:
    by_id = await (await client.get(f"{API}/currencies/{currencies['EUR']}")).json()
    for code in ("EUR", "eur"):
        response = await client.get(f"{API}/currencies/{code}")
        assert (response.status, await response.json()) == (200, by_id)
    assert by_id["data"]["code"] == "EUR"
    for missing in ("XTS", "nosuchcurrency00", "E%00R"):
        assert (await client.get(f"{API}/currencies/{missing}")).status == 404


async def test_concurrent_defaults_leave_exactly_one(
    client: Any, admin_db: asyncpg.Connection, currencies: dict[str, str]
) -> None:
    before = await admin_db.fetchval("SELECT id FROM basket.currencies WHERE is_default")
    try:
        responses = await asyncio.gather(
            *(
                client.put(f"{API}/currencies/{currency_id}", json={"default": True}, headers=admin())
                for currency_id in [*currencies.values(), before] * 4
            )
        )
        assert {response.status for response in responses} <= {200, 409}
        assert await admin_db.fetchval("SELECT count(*) FROM basket.currencies WHERE is_default") == 1
    finally:
        await client.put(f"{API}/currencies/{before}", json={"default": True}, headers=admin())


def test_a_price_with_a_fraction_the_base_currency_lacks_is_a_422_not_a_500() -> None:
    assert _minor_units(Decimal("1050"), "JPY", "price") == 1050
    assert _minor_units(Decimal("10.50"), "GBP", "price") == 1050
    with pytest.raises(ValidationFailed) as refused:
        _minor_units(Decimal("10.50"), "JPY", "variants.0.price")
    assert refused.value.errors == {"variants.0.price": ["The price may have at most 0 decimal places."]}


async def test_post_baskets_with_an_id_and_a_currency_changes_its_currency(
    client: Any, currencies: dict[str, str]
) -> None:
    variant = await create_variant(client, price="5.00", tax_rate_bp=0)
    _, body = await basket_in(client, variant["id"], 1)
    basket_id = body["data"]["id"]
    # As upstream: the lines replaced and the currency changed in one call.
    status, body = await basket_in(client, variant["id"], 3, basket_id=basket_id, currency="EUR")
    assert status == 200, body
    assert (body["data"]["id"], body["data"]["currency"], body["data"]["total"]) == (basket_id, "EUR", 17.49)
    status, body = await basket_in(client, variant["id"], 1, basket_id=basket_id, currency="XTS")
    assert (status, body) == (422, {"currency": ["The selected currency is invalid."]})
    response = await client.get(f"{API}/baskets/{basket_id}?include=lines")
    basket = (await response.json())["data"]
    assert (basket["currency"], basket["lines"]["data"][0]["quantity"]) == ("EUR", 3)


def test_a_rate_is_written_without_trailing_zeros_or_an_exponent() -> None:
    assert [money.rate_text(Decimal(v)) for v in ("1.16500000", "1.00000000", "100", "0.00860000")] == [
        "1.165",
        "1",
        "100",
        "0.0086",
    ]
