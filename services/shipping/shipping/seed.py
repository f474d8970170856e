"""`python -m shipping seed`: the demo shipping table (idempotent: loaded once per database)."""

from __future__ import annotations

import logging
from typing import Any

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

# (method code, zone, region name or None, rate, min_basket, min_weight, max_weight)
PRICES: list[tuple[str, str, str | None, int, int, int, int | None]] = [
    ("STD", UK, None, 495, 0, 0, None),
    ("STD", UK, None, 0, 10_000, 0, None),  # free UK standard delivery over 100 GBP
    ("EXP", UK, None, 995, 0, 0, 10_000),  # express up to 10 kg...
    ("EXP", UK, None, 1995, 0, 10_001, 30_000),  # ...and up to 30 kg; nothing heavier
    ("CC", UK, None, 0, 0, 0, None),
    ("RC", UK, "Highlands and Islands", 1495, 0, 0, None),
    ("RC", UK, "Mainland", 695, 0, 0, None),
    ("STD", EU, None, 1295, 0, 0, None),
]


async def load_demo(conn: asyncpg.Connection) -> dict[str, Any] | None:
    """Loads the demo table unless its UK zone exists; returns the ids created, or None."""
    async with conn.transaction():
        # Two seeders at once (two `make run`s, replicas): one loads, the other sees it loaded.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('shipping:seed'))")
        if await queries.zone_by_name(conn, UK) is not None:
            return None
        zones = {
            UK: await queries.insert_zone(conn, new_id(), UK, ["GB"]),
            EU: await queries.insert_zone(conn, new_id(), EU, sorted(EU_COUNTRIES)),
        }
        regions = {
            "Highlands and Islands": await queries.insert_region(
                conn, new_id(), zones[UK]["id"], "Highlands and Islands", HIGHLANDS_AND_ISLANDS
            ),
            "Mainland": await queries.insert_region(conn, new_id(), zones[UK]["id"], "Mainland", ["*"]),
        }
        methods = {}
        for code, (type_, name, description) in METHODS.items():
            existing = await conn.fetchrow("SELECT id FROM methods WHERE code = $1", code)
            methods[code] = existing or await queries.insert_method(conn, new_id(), type_, name, description, code)
        prices = []
        for code, zone, region, rate, min_basket, min_weight, max_weight in PRICES:
            row = await queries.insert_price(
                conn,
                {
                    "id": new_id(),
                    "method_id": methods[code]["id"],
                    "zone_id": zones[zone]["id"],
                    "region_id": regions[region]["id"] if region else None,
                    "rate": rate,
                    "currency": "GBP",
                    "min_basket": min_basket,
                    "min_weight": min_weight,
                    "max_weight": max_weight,
                    "fixed": True,
                },
            )
            prices.append(row["id"])
        return {
            "zones": {name: z["id"] for name, z in zones.items()},
            "methods": {code: m["id"] for code, m in methods.items()},
            "prices": prices,
        }


async def seed(settings: ShippingSettings) -> None:
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": settings.db_schema})
    try:
        loaded = await load_demo(conn)
    finally:
        await conn.close()
    log.info("demo shipping table", extra={"loaded": loaded is not None})
