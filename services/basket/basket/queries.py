"""All SQL of the basket service, with explicit column lists. Tables live in the service's schema
(the pool's search_path), so names are unqualified."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

_VARIANT_FIELDS = (
    "id",
    "product_id",
    "position",
    "sku",
    "name",
    "options",
    "price",
    "currency",
    "tax_rate_bp",
    "inventory",
    "incoming",
    "backorder",
    "min_qty",
    "max_qty",
    "min_batch",
    "unit_qty",
    "weight_grams",
    "requires_shipping",
    "purchasable",
    "created_at",
    "updated_at",
)
VARIANT_COLUMNS = ", ".join(_VARIANT_FIELDS)
_VARIANT_COLUMNS_V = ", ".join(f"v.{name}" for name in _VARIANT_FIELDS)

# Columns an admin may change on a variant (the whitelist of the dynamic UPDATE below).
UPDATABLE_VARIANT_COLUMNS = frozenset(
    {
        "sku",
        "name",
        "options",
        "price",
        "tax_rate_bp",
        "inventory",
        "incoming",
        "backorder",
        "min_qty",
        "max_qty",
        "min_batch",
        "unit_qty",
        "weight_grams",
        "requires_shipping",
        "purchasable",
    }
)

PRODUCT_COLUMNS = "id, name, created_at, updated_at"
BASKET_COLUMNS = "id, currency, meta, order_id, used_at, created_at, updated_at, version"
RESERVATION_COLUMNS = (
    "id, order_id, attempt_id, basket_id, status, errors, release_reason, correlation_id, expires_at, version"
)


# ---------------------------------------------------------------------------------------------
# Catalogue


async def insert_product(conn: asyncpg.Connection, product_id: str, name: str) -> asyncpg.Record:
    return await conn.fetchrow(
        f"INSERT INTO products (id, name) VALUES ($1, $2) RETURNING {PRODUCT_COLUMNS}", product_id, name
    )


async def insert_variant(conn: asyncpg.Connection, values: dict[str, Any]) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""
        INSERT INTO variants (
            id, product_id, position, sku, name, options, price, currency, tax_rate_bp, inventory,
            incoming, backorder, min_qty, max_qty, min_batch, unit_qty, weight_grams,
            requires_shipping, purchasable
        ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
        RETURNING {VARIANT_COLUMNS}
        """,
        values["id"],
        values["product_id"],
        values["position"],
        values["sku"],
        values["name"],
        values["options"],
        values["price"],
        values["currency"],
        values["tax_rate_bp"],
        values["inventory"],
        values["incoming"],
        values["backorder"],
        values["min_qty"],
        values["max_qty"],
        values["min_batch"],
        values["unit_qty"],
        values["weight_grams"],
        values["requires_shipping"],
        values["purchasable"],
    )


async def product(conn: asyncpg.Connection, product_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1", product_id)


async def products_page(conn: asyncpg.Connection, limit: int, offset: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {PRODUCT_COLUMNS} FROM products ORDER BY created_at, id LIMIT $1 OFFSET $2", limit, offset
    )


async def count_products(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM products")


async def variants_of_products(conn: asyncpg.Connection, product_ids: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {VARIANT_COLUMNS} FROM variants WHERE product_id = ANY($1::text[]) ORDER BY product_id, position, id",
        product_ids,
    )


async def variant(conn: asyncpg.Connection, variant_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {VARIANT_COLUMNS} FROM variants WHERE id = $1", variant_id)


async def variants_by_id(conn: asyncpg.Connection, variant_ids: list[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(f"SELECT {VARIANT_COLUMNS} FROM variants WHERE id = ANY($1::text[])", variant_ids)
    return {row["id"]: row for row in rows}


async def existing_skus(conn: asyncpg.Connection, skus: list[str]) -> set[str]:
    rows = await conn.fetch("SELECT sku FROM variants WHERE sku = ANY($1::text[])", skus)
    return {row["sku"] for row in rows}


async def update_variant(conn: asyncpg.Connection, variant_id: str, changes: dict[str, Any]) -> asyncpg.Record | None:
    unknown = set(changes) - UPDATABLE_VARIANT_COLUMNS
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    names = sorted(changes)
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
    if assignments:
        assignments += ", "
    return await conn.fetchrow(
        f"UPDATE variants SET {assignments}updated_at = now(), version = version + 1 "
        f"WHERE id = $1 RETURNING {VARIANT_COLUMNS}",
        variant_id,
        *(changes[name] for name in names),
    )


# ---------------------------------------------------------------------------------------------
# Baskets


async def insert_basket(conn: asyncpg.Connection, basket_id: str, currency: str, meta: dict) -> asyncpg.Record:
    return await conn.fetchrow(
        f"INSERT INTO baskets (id, currency, meta) VALUES ($1, $2, $3) RETURNING {BASKET_COLUMNS}",
        basket_id,
        currency,
        meta,
    )


async def basket(conn: asyncpg.Connection, basket_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {BASKET_COLUMNS} FROM baskets WHERE id = $1", basket_id)


async def lock_basket(conn: asyncpg.Connection, basket_id: str) -> asyncpg.Record | None:
    """Serialises every change of one basket (concurrent adds of a variant end as one line)."""
    return await conn.fetchrow(f"SELECT {BASKET_COLUMNS} FROM baskets WHERE id = $1 FOR UPDATE", basket_id)


async def touch_basket(
    conn: asyncpg.Connection, basket_id: str, version: int, meta: dict | None = None
) -> asyncpg.Record | None:
    """Compare-and-set on the version read under the lock; optionally replaces meta."""
    return await conn.fetchrow(
        "UPDATE baskets SET version = version + 1, updated_at = now(), meta = COALESCE($3, meta) "
        f"WHERE id = $1 AND version = $2 AND order_id IS NULL RETURNING {BASKET_COLUMNS}",
        basket_id,
        version,
        meta,
    )


async def mark_basket_used(conn: asyncpg.Connection, basket_id: str, order_id: str) -> bool:
    row = await conn.fetchrow(
        "UPDATE baskets SET order_id = $2, used_at = now(), updated_at = now(), version = version + 1 "
        "WHERE id = $1 AND order_id IS NULL RETURNING id",
        basket_id,
        order_id,
    )
    return row is not None


async def basket_lines(conn: asyncpg.Connection, basket_id: str) -> list[asyncpg.Record]:
    """A basket's lines with their variant's columns and the product's name."""
    return await conn.fetch(
        f"""
        SELECT l.id AS line_id, l.quantity AS line_quantity, l.meta AS line_meta,
               p.name AS product_name, {_VARIANT_COLUMNS_V}
        FROM basket_lines l
        JOIN variants v ON v.id = l.variant_id
        JOIN products p ON p.id = v.product_id
        WHERE l.basket_id = $1
        ORDER BY l.seq
        """,
        basket_id,
    )


async def line(conn: asyncpg.Connection, line_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, basket_id, variant_id, quantity, meta FROM basket_lines WHERE id = $1", line_id
    )


async def lines_by_id(conn: asyncpg.Connection, line_ids: list[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT id, basket_id, variant_id, quantity, meta FROM basket_lines WHERE id = ANY($1::text[])", line_ids
    )
    return {row["id"]: row for row in rows}


async def upsert_line(
    conn: asyncpg.Connection, line_id: str, basket_id: str, variant_id: str, quantity: int, meta: dict
) -> None:
    """Sets the variant's line to `quantity` (the caller computed it under the basket lock)."""
    await conn.execute(
        """
        INSERT INTO basket_lines (id, basket_id, variant_id, quantity, meta)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (basket_id, variant_id)
        DO UPDATE SET quantity = EXCLUDED.quantity, meta = basket_lines.meta || EXCLUDED.meta, updated_at = now()
        """,
        line_id,
        basket_id,
        variant_id,
        quantity,
        meta,
    )


async def set_line_quantity(conn: asyncpg.Connection, line_id: str, quantity: int) -> None:
    await conn.execute("UPDATE basket_lines SET quantity = $2, updated_at = now() WHERE id = $1", line_id, quantity)


async def delete_lines(conn: asyncpg.Connection, basket_id: str, line_ids: list[str]) -> None:
    await conn.execute("DELETE FROM basket_lines WHERE basket_id = $1 AND id = ANY($2::text[])", basket_id, line_ids)


async def delete_all_lines(conn: asyncpg.Connection, basket_id: str) -> None:
    await conn.execute("DELETE FROM basket_lines WHERE basket_id = $1", basket_id)


# ---------------------------------------------------------------------------------------------
# Stock reservations


async def insert_reservation(
    conn: asyncpg.Connection,
    *,
    reservation_id: str,
    order_id: str,
    attempt_id: uuid.UUID,
    basket_id: str,
    status: str,
    ttl_seconds: float,
    correlation_id: str | None,
    release_reason: str | None = None,
) -> asyncpg.Record | None:
    """None when the attempt already has its reservation (a concurrent twin waits here for it)."""
    return await conn.fetchrow(
        f"""
        INSERT INTO stock_reservations (
            id, order_id, attempt_id, basket_id, status, correlation_id, release_reason, expires_at,
            committed_at, released_at
        ) VALUES (
            $1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8),
            CASE WHEN $5 = 'committed' THEN now() END, CASE WHEN $5 = 'released' THEN now() END
        )
        ON CONFLICT (order_id, attempt_id) DO NOTHING
        RETURNING {RESERVATION_COLUMNS}
        """,
        reservation_id,
        order_id,
        attempt_id,
        basket_id,
        status,
        correlation_id,
        release_reason,
        float(ttl_seconds),
    )


async def reservation_for_attempt(
    conn: asyncpg.Connection, order_id: str, attempt_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {RESERVATION_COLUMNS} FROM stock_reservations WHERE order_id = $1 AND attempt_id = $2 FOR UPDATE",
        order_id,
        attempt_id,
    )


async def lock_stock(conn: asyncpg.Connection, variant_ids: list[str]) -> list[asyncpg.Record]:
    """Locks the variants in id order, the one order every stock change takes (no deadlocks)."""
    return await conn.fetch(
        "SELECT id, sku, purchasable, backorder, inventory, incoming FROM variants "
        "WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
        variant_ids,
    )


async def reserved_quantities(conn: asyncpg.Connection, variant_ids: list[str]) -> dict[str, int]:
    rows = await conn.fetch(
        """
        SELECT l.variant_id, sum(l.quantity)::bigint AS reserved
        FROM stock_reservation_lines l
        JOIN stock_reservations r ON r.id = l.reservation_id
        WHERE r.status = 'active' AND l.variant_id = ANY($1::text[])
        GROUP BY l.variant_id
        """,
        variant_ids,
    )
    return {row["variant_id"]: row["reserved"] for row in rows}


async def insert_reservation_lines(
    conn: asyncpg.Connection, reservation_id: str, lines: list[tuple[str, str, int]]
) -> None:
    """`lines`: (variant_id, sku, quantity), one per variant."""
    await conn.execute(
        """
        INSERT INTO stock_reservation_lines (reservation_id, variant_id, sku, quantity)
        SELECT $1, variant_id, sku, quantity
        FROM unnest($2::text[], $3::text[], $4::int[]) AS t(variant_id, sku, quantity)
        """,
        reservation_id,
        [line[0] for line in lines],
        [line[1] for line in lines],
        [line[2] for line in lines],
    )


async def reservation_lines(conn: asyncpg.Connection, reservation_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT variant_id, sku, quantity FROM stock_reservation_lines WHERE reservation_id = $1 ORDER BY variant_id",
        reservation_id,
    )


async def set_refused(conn: asyncpg.Connection, reservation_id: str, errors: dict[str, list[str]]) -> None:
    await conn.execute(
        "UPDATE stock_reservations SET status = 'refused', errors = $2, updated_at = now(), version = version + 1 "
        "WHERE id = $1 AND status = 'active'",
        reservation_id,
        errors,
    )


async def commit_reservation(conn: asyncpg.Connection, reservation_id: str, expected: str, version: int) -> bool:
    row = await conn.fetchrow(
        "UPDATE stock_reservations SET status = 'committed', committed_at = now(), updated_at = now(), "
        "version = version + 1 WHERE id = $1 AND status = $2 AND version = $3 RETURNING id",
        reservation_id,
        expected,
        version,
    )
    return row is not None


async def release_reservation(conn: asyncpg.Connection, reservation_id: str, version: int, reason: str) -> bool:
    row = await conn.fetchrow(
        "UPDATE stock_reservations SET status = 'released', release_reason = $3, released_at = now(), "
        "updated_at = now(), version = version + 1 WHERE id = $1 AND status = 'active' AND version = $2 RETURNING id",
        reservation_id,
        version,
        reason,
    )
    return row is not None


async def decrement_inventory(conn: asyncpg.Connection, variant_id: str, quantity: int) -> None:
    await conn.execute(
        "UPDATE variants SET inventory = inventory - $2, updated_at = now(), version = version + 1 WHERE id = $1",
        variant_id,
        quantity,
    )


async def expired_reservations(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Claims expired active reservations; replicas sweeping at once never claim the same row."""
    return await conn.fetch(
        f"""
        SELECT {RESERVATION_COLUMNS} FROM stock_reservations
        WHERE status = 'active' AND expires_at <= now()
        ORDER BY expires_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED
        """,
        limit,
    )
