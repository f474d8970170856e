"""`python -m shipping seed`: the demo shipping table (idempotent: what it lacks is added, once)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import asyncpg

from shared.http import new_id
from shipping import queries
from shipping.settings import ShippingSettings

log = logging.getLogger(__name__)

UK = "United Kingdom"
EU = "Europe"
EU_COUNTRIES = ["AT", "BE", "DE", "DK", "ES", "FR", "IE", "IT", "NL", "PT", "SE"]
HIGHLANDS_AND_ISLANDS = ["HS", "IV", "KW", "ZE", "PA20", "PA41", "PH17"]

METHODS = {
    # code: (type, name, description)
    "STD": ("standard", "Standard Delivery", "3 to 5 working days"),
    "EXP": ("standard", "Express Delivery", "Next working day when ordered before 2pm"),
    "CC": ("collection", "Click & Collect", "Collect from our shop"),
    "RC": ("regional", "Regional Courier", "Courier, priced by postcode area"),
}


class DemoPrice(NamedTuple):
    code: str  # the method's
    zone: str
    region: str | None
    currency: str
    rate: int  # minor units of `currency`, ex-tax
    min_basket: int = 0
    min_weight: int = 0  # grams
    max_weight: int | None = None


# The same tariff in each currency: its own round prices (not conversions of the pounds), so that
# a basket in euros or dollars can check out to the UK or the EU.
PRICES: list[DemoPrice] = [
    # GBP
    DemoPrice("STD", UK, None, "GBP", 495),
    DemoPrice("STD", UK, None, "GBP", 0, min_basket=10_000),  # free UK standard delivery from 100.00
    DemoPrice("EXP", UK, None, "GBP", 995, max_weight=10_000),  # express up to 10 kg...
    DemoPrice("EXP", UK, None, "GBP", 1995, min_weight=10_001, max_weight=30_000),  # ...to 30 kg; not heavier
    DemoPrice("CC", UK, None, "GBP", 0),
    DemoPrice("RC", UK, "Highlands and Islands", "GBP", 1495),
    DemoPrice("RC", UK, "Mainland", "GBP", 695),
    DemoPrice("STD", EU, None, "GBP", 1295),
    # EUR
    DemoPrice("STD", UK, None, "EUR", 575),
    DemoPrice("STD", UK, None, "EUR", 0, min_basket=11_500),
    DemoPrice("EXP", UK, None, "EUR", 1150, max_weight=10_000),
    DemoPrice("EXP", UK, None, "EUR", 2295, min_weight=10_001, max_weight=30_000),
    DemoPrice("CC", UK, None, "EUR", 0),
    DemoPrice("RC", UK, "Highlands and Islands", "EUR", 1750),
    DemoPrice("RC", UK, "Mainland", "EUR", 795),
    DemoPrice("STD", EU, None, "EUR", 1495),
    # USD
    DemoPrice("STD", UK, None, "USD", 625),
    DemoPrice("STD", UK, None, "USD", 0, min_basket=12_500),
    DemoPrice("EXP", UK, None, "USD", 1250, max_weight=10_000),
    DemoPrice("EXP", UK, None, "USD", 2495, min_weight=10_001, max_weight=30_000),
    DemoPrice("CC", UK, None, "USD", 0),
    DemoPrice("RC", UK, "Highlands and Islands", "USD", 1895),
    DemoPrice("RC", UK, "Mainland", "USD", 875),
    DemoPrice("STD", EU, None, "USD", 1650),
]

ZONES = {UK: ["GB"], EU: sorted(EU_COUNTRIES)}
REGIONS = {"Highlands and Islands": HIGHLANDS_AND_ISLANDS, "Mainland": ["*"]}  # of the UK zone


async def load_demo(conn: asyncpg.Connection, prices: Sequence[DemoPrice] = PRICES) -> list[str]:
    """Adds what the demo table lacks; returns the ids of the prices it added (none: complete).

    The table grows with the demo (the EUR and USD prices came after the GBP ones), so a database
    seeded before gets what is new on its next `make run`. What it lacks is decided per method,
    zone and currency: one with no price there gets the demo's prices (every tier, every region)
    there; one with a price there is left as it is, so that an admin's changes to the demo's
    prices (a rate, a threshold, a tier deleted) stand. Zones, regions and methods are found by
    name (by code, for methods) or made.
    """
    async with conn.transaction():
        # Two seeders at once (two `make run`s, replicas): one loads, the other then finds it loaded.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('shipping:seed'))")
        zones = {}
        for name, countries in ZONES.items():
            zones[name] = await queries.zone_by_name(conn, name) or await queries.insert_zone(
                conn, new_id(), name, countries
            )
        methods = {}
        for code, (type_, name, description) in METHODS.items():
            methods[code] = await queries.method_by_code(conn, code) or await queries.insert_method(
                conn, new_id(), type_, name, description, code
            )
        priced = await queries.priced_methods(conn, [zone["id"] for zone in zones.values()])
        regions: dict[tuple[str, str], asyncpg.Record] = {}
        added = []
        for price in prices:
            method_id, zone_id = methods[price.code]["id"], zones[price.zone]["id"]
            if (method_id, zone_id, price.currency) in priced:
                continue
            region_id = None
            if price.region is not None:
                key = (zone_id, price.region)
                if key not in regions:
                    regions[key] = await queries.region_by_name(conn, zone_id, price.region) or (
                        await queries.insert_region(conn, new_id(), zone_id, price.region, REGIONS[price.region])
                    )
                region_id = regions[key]["id"]
            row = await queries.insert_price(
                conn,
                {
                    "id": new_id(),
                    "method_id": method_id,
                    "zone_id": zone_id,
                    "region_id": region_id,
                    "rate": price.rate,
                    "currency": price.currency,
                    "min_basket": price.min_basket,
                    "min_weight": price.min_weight,
                    "max_weight": price.max_weight,
                    "fixed": True,
                },
            )
            added.append(row["id"])
        return added


async def seed(settings: ShippingSettings) -> None:
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": settings.db_schema})
    try:
        added = await load_demo(conn)
    finally:
        await conn.close()
    log.info("demo shipping table", extra={"prices_added": len(added)})
