"""The demo catalogue and currencies loaded by `make run` (`python -m basket seed`); safe to run again.

A product is created only when its first sku is not in the catalogue yet, so a second run adds
nothing and an operator's later changes (prices, stock) are kept; a currency likewise.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from basket import pricing_queries, queries
from basket.settings import BasketSettings
from shared import db, money
from shared.http import new_id

log = logging.getLogger(__name__)


def _v(sku: str, price: int, **fields: Any) -> dict[str, Any]:
    return {"sku": sku, "price": price, **fields}


# (product name, variants); prices are ex-tax minor units (GBP), weights grams.
CATALOGUE: list[tuple[str, list[dict[str, Any]]]] = [
    (
        "Classic Cotton T-Shirt",
        [
            _v("TSHIRT-WHITE-S", 1250, name="White / Small", options={"colour": "White", "size": "S"}),
            _v("TSHIRT-WHITE-M", 1250, name="White / Medium", options={"colour": "White", "size": "M"}),
            _v("TSHIRT-WHITE-L", 1250, name="White / Large", options={"colour": "White", "size": "L"}),
        ],
    ),
    (
        "Hooded Sweatshirt",
        [
            _v("HOODIE-GREY-M", 3499, name="Grey / Medium", options={"colour": "Grey", "size": "M"}, weight_grams=550),
            _v("HOODIE-NAVY-M", 3499, name="Navy / Medium", options={"colour": "Navy", "size": "M"}, weight_grams=550),
        ],
    ),
    # Zero-rated (books carry no VAT in the UK).
    ("Children's Picture Book", [_v("BOOK-PICTURE-01", 799, tax_rate_bp=0, weight_grams=300)]),
    # Sold in packs of five only.
    ("A4 Printer Paper (500 sheets)", [_v("PAPER-A4-500", 425, min_batch=5, weight_grams=2500, inventory=500)]),
    # Little stock and no backorders: the basket refuses a third one.
    ("Limited Edition Art Print", [_v("PRINT-LTD-01", 4500, inventory=2, backorder="in-stock", weight_grams=400)]),
    (
        "Espresso Coffee Beans",
        [
            _v("COFFEE-ESP-250", 650, name="250 g", options={"size": "250g"}, weight_grams=250, tax_rate_bp=0),
            _v("COFFEE-ESP-1000", 2100, name="1 kg", options={"size": "1kg"}, weight_grams=1000, tax_rate_bp=0),
        ],
    ),
    (
        "Ceramic Mug",
        [
            _v("MUG-WHITE", 800, name="White", options={"colour": "White"}, weight_grams=350),
            _v("MUG-BLACK", 800, name="Black", options={"colour": "Black"}, weight_grams=350),
        ],
    ),
    ("Canvas Tote Bag", [_v("TOTE-NATURAL", 999, weight_grams=200)]),
    # Sells what is on hand plus what is on its way.
    ("Wireless Mouse", [_v("MOUSE-WL-01", 1999, inventory=5, incoming=50, backorder="expected", weight_grams=120)]),
    (
        "Gift Card",
        [_v("GIFT-25", 2500, name="£25", tax_rate_bp=0, backorder="always", requires_shipping=False, inventory=0)],
    ),
    (
        "Running Socks (3 pack)",
        [
            _v("SOCKS-S", 1100, name="Small", options={"size": "S"}, max_qty=10, weight_grams=150),
            _v("SOCKS-L", 1100, name="Large", options={"size": "L"}, max_qty=10, weight_grams=150),
        ],
    ),
    ("Scented Candle", [_v("CANDLE-FIG", 1450, min_qty=2, weight_grams=450)]),
]

# Currencies besides the base (whose row the service makes at start-up): code, rate per GBP, format.
CURRENCIES = [("EUR", Decimal("1.165"), "€{price}"), ("USD", Decimal("1.27"), "US${price}")]

DEFAULTS: dict[str, Any] = {
    "name": None,
    "options": {},
    "currency": "GBP",
    "tax_rate_bp": 2000,
    "inventory": 100,
    "incoming": 0,
    "backorder": "in-stock",
    "min_qty": 1,
    "max_qty": 0,
    "min_batch": 1,
    "unit_qty": 1,
    "weight_grams": 200,
    "requires_shipping": True,
    "purchasable": True,
}


async def seed(settings: BasketSettings) -> None:
    pool = await db.create_pool(settings)
    created = 0
    try:
        async with pool.acquire() as conn, conn.transaction():
            # One seeder at a time (two `make run`s at once must not both create a product).
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('basket:seed'))")
            for name, variants in CATALOGUE:
                if await queries.existing_skus(conn, [variants[0]["sku"]]):
                    continue
                product = await queries.insert_product(conn, new_id(), name)
                for position, fields in enumerate(variants):
                    values = DEFAULTS | fields | {"id": new_id(), "product_id": product["id"], "position": position}
                    await queries.insert_variant(conn, values)
                created += 1
            for code, rate, format_ in CURRENCIES:
                if code != settings.base_currency and await pricing_queries.currency_by_code(conn, code) is None:
                    await pricing_queries.insert_currency(conn, new_id(), code, _currency(code, rate, format_))
    finally:
        await pool.close()
    log.info("demo catalogue loaded", extra={"products_created": created, "products": len(CATALOGUE)})


def _currency(code: str, rate: Decimal, format_: str) -> dict[str, Any]:
    return {
        "name": money.currency_name(code),
        "exchange_rate": rate,
        "format": format_,
        "decimal_point": ".",
        "thousand_point": ",",
        "enabled": True,
        "is_default": False,
    }
