"""Which prices apply: table-driven over the demo table (the same rows `python -m shipping seed`
loads), without I/O."""

from __future__ import annotations

import pytest

from shipping import seed
from shipping.domain import Candidate, Order, normalise_postcode, quote, region_match, shipping_tax

REGIONS = {"Highlands and Islands": tuple(seed.HIGHLANDS_AND_ISLANDS), "Mainland": ("*",)}
ZONES = {seed.UK: frozenset({"GB"}), seed.EU: frozenset(seed.EU_COUNTRIES)}


def demo_table() -> dict[str, Candidate]:
    """Named prices: `STD-UK-495`, `RC-UK-Mainland` in pounds, `STD-UK-575-EUR`, `RC-UK-Mainland-USD`..."""
    table = {}
    for price in seed.PRICES:
        type_, name, _ = seed.METHODS[price.code]
        key = f"{price.code}-{'UK' if price.zone == seed.UK else 'EU'}-{price.region or price.rate}"
        key += "" if price.currency == "GBP" else f"-{price.currency}"
        table[key] = Candidate(
            id=key,
            rate=price.rate,
            currency=price.currency,
            min_basket=price.min_basket,
            min_weight=price.min_weight,
            max_weight=price.max_weight,
            fixed=True,
            method_id=price.code,
            method_type=type_,
            method_name=name,
            zone_id=price.zone,
            zone_name=price.zone,
            countries=ZONES[price.zone],
            region_prefixes=REGIONS[price.region] if price.region else None,
        )
    return table


TABLE = demo_table()
UK_LIGHT = ["CC-UK-0", "STD-UK-495", "RC-UK-Mainland", "EXP-UK-995"]


@pytest.mark.parametrize(
    ("country", "postcode", "sub_total", "weight", "expected"),
    [
        # UK mainland, a light parcel under the free threshold: cheapest first
        ("GB", "SW1A 1AA", 5000, 1000, UK_LIGHT),
        ("gb", " sw1a  1aa ", 5000, 1000, UK_LIGHT),
        # the free-delivery threshold is inclusive, and one penny under it is not enough
        ("GB", "SW1A 1AA", 9999, 1000, UK_LIGHT),
        ("GB", "SW1A 1AA", 10000, 1000, ["CC-UK-0", "STD-UK-0", "RC-UK-Mainland", "EXP-UK-995"]),
        ("GB", "SW1A 1AA", 25000, 1000, ["CC-UK-0", "STD-UK-0", "RC-UK-Mainland", "EXP-UK-995"]),
        # regional prices by postcode prefix: the Highlands and Islands tariff, not the mainland one
        ("GB", "IV1 1AA", 5000, 1000, ["CC-UK-0", "STD-UK-495", "EXP-UK-995", "RC-UK-Highlands and Islands"]),
        ("GB", "ze2 9aa", 5000, 1000, ["CC-UK-0", "STD-UK-495", "EXP-UK-995", "RC-UK-Highlands and Islands"]),
        ("GB", "PA20 0AA", 5000, 1000, ["CC-UK-0", "STD-UK-495", "EXP-UK-995", "RC-UK-Highlands and Islands"]),
        # PA2 0AB is Paisley: the prefix PA20 must not match across the space
        ("GB", "PA2 0AB", 5000, 1000, UK_LIGHT),
        # no postcode: only the `*` region and region-less prices
        ("GB", None, 5000, 1000, UK_LIGHT),
        # weight bounds: express is 9.95 up to 10 kg, 19.95 up to 30 kg, not offered above
        ("GB", "SW1A 1AA", 5000, 10_000, UK_LIGHT),
        ("GB", "SW1A 1AA", 5000, 10_001, ["CC-UK-0", "STD-UK-495", "RC-UK-Mainland", "EXP-UK-1995"]),
        ("GB", "SW1A 1AA", 5000, 30_000, ["CC-UK-0", "STD-UK-495", "RC-UK-Mainland", "EXP-UK-1995"]),
        ("GB", "SW1A 1AA", 5000, 30_001, ["CC-UK-0", "STD-UK-495", "RC-UK-Mainland"]),
        # an EU country: EU standard only
        ("FR", "75001", 5000, 1000, ["STD-EU-1295"]),
        ("DE", None, 50000, 1000, ["STD-EU-1295"]),
        # a country in no zone
        ("US", "10001", 5000, 1000, []),
        ("CH", "8001", 5000, 1000, []),
    ],
)
def test_quote_over_the_demo_table(country, postcode, sub_total, weight, expected):
    order = Order(country, postcode, sub_total, weight, "GBP")
    assert [p.id for p in quote(TABLE.values(), order)] == expected


def test_rates_and_tax_of_the_quote():
    prices = quote(TABLE.values(), Order("GB", "IV1 1AA", 5000, 1000, "GBP"))
    assert [(p.rate, p.tax) for p in prices] == [(0, 0), (495, 99), (995, 199), (1495, 299)]


def test_a_currency_without_prices_gets_nothing():
    assert quote(TABLE.values(), Order("GB", "SW1A 1AA", 5000, 1000, "JPY")) == []
    assert quote(TABLE.values(), Order("FR", "75001", 5000, 1000, "CHF")) == []


@pytest.mark.parametrize(
    ("currency", "country", "postcode", "sub_total", "weight", "expected"),
    [
        # each currency's own tariff, and only it: its own free threshold (115.00 EUR, 125.00 USD)
        (
            "EUR",
            "GB",
            "SW1A 1AA",
            5000,
            1000,
            ["CC-UK-0-EUR", "STD-UK-575-EUR", "RC-UK-Mainland-EUR", "EXP-UK-1150-EUR"],
        ),
        (
            "eur",
            "GB",
            "SW1A 1AA",
            11_499,
            1000,
            ["CC-UK-0-EUR", "STD-UK-575-EUR", "RC-UK-Mainland-EUR", "EXP-UK-1150-EUR"],
        ),
        (
            "EUR",
            "GB",
            "SW1A 1AA",
            11_500,
            1000,
            ["CC-UK-0-EUR", "STD-UK-0-EUR", "RC-UK-Mainland-EUR", "EXP-UK-1150-EUR"],
        ),
        (
            "EUR",
            "GB",
            "IV1 1AA",
            5000,
            20_000,
            ["CC-UK-0-EUR", "STD-UK-575-EUR", "RC-UK-Highlands and Islands-EUR", "EXP-UK-2295-EUR"],
        ),
        ("EUR", "FR", "75001", 5000, 1000, ["STD-EU-1495-EUR"]),
        (
            "USD",
            "GB",
            "SW1A 1AA",
            12_499,
            1000,
            ["CC-UK-0-USD", "STD-UK-625-USD", "RC-UK-Mainland-USD", "EXP-UK-1250-USD"],
        ),
        (
            "USD",
            "GB",
            "SW1A 1AA",
            12_500,
            1000,
            ["CC-UK-0-USD", "STD-UK-0-USD", "RC-UK-Mainland-USD", "EXP-UK-1250-USD"],
        ),
        (
            "USD",
            "GB",
            "ZE2 9AA",
            5000,
            1000,
            ["CC-UK-0-USD", "STD-UK-625-USD", "EXP-UK-1250-USD", "RC-UK-Highlands and Islands-USD"],
        ),
        ("USD", "DE", None, 5000, 1000, ["STD-EU-1650-USD"]),
    ],
)
def test_each_currency_is_quoted_its_own_prices(currency, country, postcode, sub_total, weight, expected):
    assert [p.id for p in quote(TABLE.values(), Order(country, postcode, sub_total, weight, currency))] == expected


def test_every_currency_has_the_whole_tariff():
    """The same methods, zones, regions and weight bands in each currency: an order in any of
    them can check out to the UK or the EU."""

    def tiers(currency):
        return sorted(
            (p.code, p.zone, p.region or "", p.min_weight, p.max_weight or 0, p.min_basket > 0)
            for p in seed.PRICES
            if p.currency == currency
        )

    assert {p.currency for p in seed.PRICES} == {"GBP", "EUR", "USD"}
    assert tiers("EUR") == tiers("GBP") == tiers("USD")


@pytest.mark.parametrize(
    ("price_id", "country", "postcode", "sub_total", "weight", "applies"),
    [
        ("STD-UK-495", "GB", "SW1A 1AA", 5000, 1000, True),
        ("STD-UK-0", "GB", "SW1A 1AA", 10000, 1000, True),
        ("STD-UK-0", "GB", "SW1A 1AA", 9999, 1000, False),  # under the free threshold
        ("STD-EU-1295", "GB", "SW1A 1AA", 5000, 1000, False),  # a price from another zone
        ("STD-UK-495", "FR", "75001", 5000, 1000, False),
        ("no-such-price", "GB", "SW1A 1AA", 5000, 1000, False),
        ("EXP-UK-995", "GB", "SW1A 1AA", 5000, 12_000, False),  # over its weight bound
        ("RC-UK-Mainland", "GB", "IV1 1AA", 5000, 1000, False),  # the postcode has its own tariff
        ("RC-UK-Highlands and Islands", "GB", "IV1 1AA", 5000, 1000, True),
        ("RC-UK-Highlands and Islands", "GB", "SW1A 1AA", 5000, 1000, False),
    ],
)
def test_quote_one_price(price_id, country, postcode, sub_total, weight, applies):
    result = quote(TABLE.values(), Order(country, postcode, sub_total, weight, "GBP"), price_id=price_id)
    assert [p.id for p in result] == ([price_id] if applies else [])


def test_a_regional_tariff_does_not_fall_back_when_its_thresholds_fail():
    heavy_only = Candidate(**{**TABLE["RC-UK-Highlands and Islands"].__dict__, "id": "RC-heavy", "max_weight": 5000})
    table = [p for k, p in TABLE.items() if k != "RC-UK-Highlands and Islands"] + [heavy_only]
    ids = [p.id for p in quote(table, Order("GB", "IV1 1AA", 5000, 6000, "GBP"))]
    assert "RC-UK-Mainland" not in ids and "RC-heavy" not in ids


def test_longest_prefix_wins():
    assert region_match(("E", "EH", "EH1"), "EH12 9AB") == 3
    assert region_match(("*", "EH"), "G1 1AA") == 0
    assert region_match(("EH",), "G1 1AA") is None
    assert region_match(None, "") == 0
    assert region_match(("EH",), "") is None
    base = TABLE["RC-UK-Mainland"]
    wide = Candidate(**{**base.__dict__, "id": "wide", "rate": 100, "region_prefixes": ("E",)})
    narrow = Candidate(**{**base.__dict__, "id": "narrow", "rate": 900, "region_prefixes": ("EH1",)})
    ids = [p.id for p in quote([base, wide, narrow], Order("GB", "EH12 9AB", 0, 0, "GBP"))]
    assert ids == ["narrow"]
    ids = [p.id for p in quote([base, wide, narrow], Order("GB", "E1 6AN", 0, 0, "GBP"))]
    assert ids == ["wide"]


def test_cheapest_per_method_across_zones():
    base = TABLE["STD-UK-495"]
    other_zone = Candidate(**{**base.__dict__, "id": "STD-other", "rate": 300, "zone_id": "Z2", "zone_name": "Z2"})
    assert [p.id for p in quote([base, other_zone], Order("GB", None, 0, 0, "GBP"))] == ["STD-other"]


def test_helpers():
    assert normalise_postcode("  sw1a\t1aa ") == "SW1A 1AA"
    assert normalise_postcode(None) == ""
    assert [shipping_tax(r) for r in (0, 1, 4, 5, 495, 1995)] == [0, 0, 0, 1, 99, 399]
