"""The SQL of what a basket is priced with: discounts and the coupons of baskets
(`discounts.py`; their uses by checkouts are in `stock_queries.py`), and currencies
(`currencies.py`). Catalogue and baskets are in `queries.py`."""

from __future__ import annotations

from typing import Any

import asyncpg

Conn = asyncpg.Connection | asyncpg.Pool

# ---------------------------------------------------------------------------------------------
# Discounts and the coupons of baskets (`discounts.py`; their uses by checkouts are in
# `stock_queries.py`)

DISCOUNT_COLUMNS = """
    id, name, coupon, status, priority, stop_rules, start_at, end_at, usage_limit, usage_limit_per_email,
    currency, min_basket, product_ids, variant_ids, percentage_bp, fixed_amount, free_shipping, uses, reserved,
    created_at, updated_at, version
"""
# What an admin sets (the order of `insert_discount`'s and `update_discount`'s parameters).
DISCOUNT_SETTABLE = (
    "name",
    "coupon",
    "status",
    "priority",
    "stop_rules",
    "start_at",
    "end_at",
    "usage_limit",
    "usage_limit_per_email",
    "min_basket",
    "product_ids",
    "variant_ids",
    "percentage_bp",
    "fixed_amount",
    "free_shipping",
)
_DISCOUNT_PARAMS = ", ".join(f"${i}" for i in range(3, 3 + len(DISCOUNT_SETTABLE)))


async def insert_discount(
    conn: asyncpg.Connection, discount_id: str, currency: str, values: dict[str, Any]
) -> asyncpg.Record:
    """`values`: every column of `DISCOUNT_SETTABLE`. A coupon code already taken (in any case)
    raises `asyncpg.UniqueViolationError`."""
    return await conn.fetchrow(
        f"INSERT INTO discounts (id, currency, {', '.join(DISCOUNT_SETTABLE)}) VALUES ($1, $2, {_DISCOUNT_PARAMS}) "
        f"RETURNING {DISCOUNT_COLUMNS}",
        discount_id,
        currency,
        *(values[name] for name in DISCOUNT_SETTABLE),
    )


async def discount(conn: Conn, discount_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {DISCOUNT_COLUMNS} FROM discounts WHERE id = $1", discount_id)


async def lock_discount(
    conn: asyncpg.Connection, discount_id: str, *, for_delete: bool = False
) -> asyncpg.Record | None:
    """An update takes `FOR NO KEY UPDATE` (a basket applying the coupon meanwhile does not wait
    on it); a delete takes `FOR UPDATE`."""
    mode = "UPDATE" if for_delete else "NO KEY UPDATE"
    return await conn.fetchrow(f"SELECT {DISCOUNT_COLUMNS} FROM discounts WHERE id = $1 FOR {mode}", discount_id)


async def discounts_page(conn: Conn, limit: int, offset: int) -> tuple[int, list[asyncpg.Record]]:
    total = await conn.fetchval("SELECT count(*) FROM discounts")
    rows = await conn.fetch(
        f"SELECT {DISCOUNT_COLUMNS} FROM discounts ORDER BY created_at, id LIMIT $1 OFFSET $2", limit, offset
    )
    return total, rows


async def update_discount(
    conn: asyncpg.Connection, discount_id: str, version: int, values: dict[str, Any]
) -> asyncpg.Record | None:
    """Every column of `DISCOUNT_SETTABLE` set from `values`: a compare-and-set on the version read
    under the lock (None when it moved). A coupon code taken raises `asyncpg.UniqueViolationError`."""
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(DISCOUNT_SETTABLE, start=3))
    return await conn.fetchrow(
        f"UPDATE discounts SET {assignments}, updated_at = now(), version = version + 1 "
        f"WHERE id = $1 AND version = $2 RETURNING {DISCOUNT_COLUMNS}",
        discount_id,
        version,
        *(values[name] for name in DISCOUNT_SETTABLE),
    )


async def delete_discount(conn: asyncpg.Connection, discount_id: str) -> None:
    """Baskets lose it as their coupon and its past uses go with it (ON DELETE CASCADE): the
    orders placed with it keep their own copy."""
    await conn.execute("DELETE FROM discounts WHERE id = $1", discount_id)


async def discount_by_coupon(conn: asyncpg.Connection, coupon: str) -> asyncpg.Record | None:
    """`FOR KEY SHARE`: a delete of the discount waits until the basket has it (and then takes it
    away), or comes first and the coupon is unknown."""
    return await conn.fetchrow(
        f"SELECT {DISCOUNT_COLUMNS} FROM discounts WHERE lower(coupon) = lower($1) AND coupon IS NOT NULL "
        "FOR KEY SHARE",
        coupon,
    )


async def basket_discounts(conn: Conn, basket_id: str) -> list[asyncpg.Record]:
    """What may discount the basket: its coupon's discount (whatever its state: pricing decides),
    and the automatic discounts that are enabled, not ended and not used up."""
    return await conn.fetch(
        f"""
        SELECT {DISCOUNT_COLUMNS} FROM discounts
        WHERE id = (SELECT discount_id FROM basket_coupons WHERE basket_id = $1)
        UNION ALL
        SELECT {DISCOUNT_COLUMNS} FROM discounts
        WHERE coupon IS NULL AND status AND (end_at IS NULL OR end_at > now())
            AND (usage_limit IS NULL OR uses + reserved < usage_limit)
        """,
        basket_id,
    )


async def set_basket_coupon(conn: asyncpg.Connection, basket_id: str, discount_id: str) -> None:
    """The basket's one coupon (replacing the one it had)."""
    await conn.execute(
        """
        INSERT INTO basket_coupons (basket_id, discount_id) VALUES ($1, $2)
        ON CONFLICT (basket_id) DO UPDATE SET discount_id = EXCLUDED.discount_id, applied_at = now()
        """,
        basket_id,
        discount_id,
    )


async def remove_basket_coupon(conn: asyncpg.Connection, basket_id: str) -> bool:
    """False when the basket had no coupon."""
    removed = await conn.fetchval("DELETE FROM basket_coupons WHERE basket_id = $1 RETURNING basket_id", basket_id)
    return removed is not None


# ---------------------------------------------------------------------------------------------
# Currencies (`currencies.py`)

CURRENCY_COLUMNS = (
    "id, code, name, exchange_rate, format, decimal_point, thousand_point, enabled, is_default, "
    "created_at, updated_at, version"
)
# What an admin sets (the order of `insert_currency`'s and `update_currency`'s parameters).
CURRENCY_SETTABLE = ("name", "exchange_rate", "format", "decimal_point", "thousand_point", "enabled", "is_default")
_CURRENCY_PARAMS = ", ".join(f"${i}" for i in range(3, 3 + len(CURRENCY_SETTABLE)))


async def insert_currency(
    conn: asyncpg.Connection, currency_id: str, code: str, values: dict[str, Any]
) -> asyncpg.Record:
    """`values`: every column of `CURRENCY_SETTABLE`. A code already there raises
    `asyncpg.UniqueViolationError`."""
    return await conn.fetchrow(
        f"INSERT INTO currencies (id, code, {', '.join(CURRENCY_SETTABLE)}) VALUES ($1, $2, {_CURRENCY_PARAMS}) "
        f"RETURNING {CURRENCY_COLUMNS}",
        currency_id,
        code,
        *(values[name] for name in CURRENCY_SETTABLE),
    )


async def insert_base_currency(conn: Conn, currency_id: str, code: str, name: str, format_: str) -> None:
    """The base currency's row at rate 1, unless it is there; the default when there is none yet."""
    await conn.execute(
        """
        INSERT INTO currencies (id, code, name, exchange_rate, format, is_default)
        VALUES ($1, $2, $3, 1, $4, NOT EXISTS (SELECT 1 FROM currencies WHERE is_default))
        ON CONFLICT DO NOTHING
        """,
        currency_id,
        code,
        name,
        format_,
    )


async def currency(conn: Conn, currency_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {CURRENCY_COLUMNS} FROM currencies WHERE id = $1", currency_id)


async def currency_by_code(conn: Conn, code: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {CURRENCY_COLUMNS} FROM currencies WHERE code = $1", code)


async def default_currency(conn: Conn) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {CURRENCY_COLUMNS} FROM currencies WHERE is_default")


async def lock_currency(conn: asyncpg.Connection, currency_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {CURRENCY_COLUMNS} FROM currencies WHERE id = $1 FOR UPDATE", currency_id)


async def currencies_page(conn: Conn, limit: int, offset: int) -> tuple[int, list[asyncpg.Record]]:
    total = await conn.fetchval("SELECT count(*) FROM currencies")
    rows = await conn.fetch(
        f"SELECT {CURRENCY_COLUMNS} FROM currencies ORDER BY is_default DESC, code LIMIT $1 OFFSET $2",
        limit,
        offset,
    )
    return total, rows


async def update_currency(
    conn: asyncpg.Connection, currency_id: str, version: int, values: dict[str, Any]
) -> asyncpg.Record | None:
    """Every column of `CURRENCY_SETTABLE` set from `values`: a compare-and-set on the version read
    under the lock (None when it moved)."""
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(CURRENCY_SETTABLE, start=3))
    return await conn.fetchrow(
        f"UPDATE currencies SET {assignments}, updated_at = now(), version = version + 1 "
        f"WHERE id = $1 AND version = $2 RETURNING {CURRENCY_COLUMNS}",
        currency_id,
        version,
        *(values[name] for name in CURRENCY_SETTABLE),
    )


async def clear_default_currency(conn: asyncpg.Connection, except_id: str) -> None:
    """Before another currency becomes the default (the unique index allows one). Serialised by a
    lock held to the commit: two currencies made the default at once end with the later one."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('basket:default-currency'))")
    await conn.execute(
        "UPDATE currencies SET is_default = false, updated_at = now(), version = version + 1 "
        "WHERE is_default AND id <> $1",
        except_id,
    )


async def currency_in_use(conn: asyncpg.Connection, code: str) -> bool:
    """Whether a basket (placed orders' too: they are still shown) or a discount is in this currency."""
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM baskets WHERE currency = $1) "
        "OR EXISTS (SELECT 1 FROM discounts WHERE currency = $1)",
        code,
    )


async def delete_currency(conn: asyncpg.Connection, currency_id: str, version: int) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM currencies WHERE id = $1 AND version = $2 RETURNING id", currency_id, version
    )
    return deleted is not None
