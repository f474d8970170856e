"""The SQL of the catalogue and baskets (stock reservations are in `stock_queries.py`, discounts
and currencies in `pricing_queries.py`). Explicit columns; plain functions taking a connection and
returning records. Tables live in the service's schema (the pool's search_path), so names are
unqualified."""

from __future__ import annotations

from typing import Any

import asyncpg

Conn = asyncpg.Connection | asyncpg.Pool

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
# What a new variant is given; the others are the table's defaults.
_VARIANT_INSERTED = ", ".join(name for name in _VARIANT_FIELDS if name not in ("created_at", "updated_at"))

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
BASKET_COLUMNS = "id, currency, meta, order_id, used_at, created_at, updated_at, version, customer_id, saved_name"


# ---------------------------------------------------------------------------------------------
# Catalogue


async def insert_product(conn: asyncpg.Connection, product_id: str, name: str) -> asyncpg.Record:
    return await conn.fetchrow(
        f"INSERT INTO products (id, name) VALUES ($1, $2) RETURNING {PRODUCT_COLUMNS}", product_id, name
    )


async def insert_variant(conn: asyncpg.Connection, values: dict[str, Any]) -> asyncpg.Record:
    """`values`: every column of `_VARIANT_INSERTED` by name (one JSON parameter, not nineteen)."""
    return await conn.fetchrow(
        f"INSERT INTO variants ({_VARIANT_INSERTED}) "
        f"SELECT {_VARIANT_INSERTED} FROM jsonb_populate_record(NULL::variants, $1::jsonb) "
        f"RETURNING {VARIANT_COLUMNS}",
        values,
    )


async def product(conn: Conn, product_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1", product_id)


async def product_with_variants(conn: Conn, product_id: str) -> asyncpg.Record | None:
    """The product and (as `variants`, a JSON list in position order) its variants: one round trip."""
    return await conn.fetchrow(
        f"""
        SELECT {PRODUCT_COLUMNS},
            (SELECT coalesce(json_agg(v ORDER BY v.position, v.id), '[]')
             FROM (SELECT {VARIANT_COLUMNS} FROM variants WHERE product_id = p.id) v) AS variants
        FROM products p WHERE id = $1
        """,
        product_id,
    )


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


async def lock_variant(conn: asyncpg.Connection, variant_id: str) -> asyncpg.Record | None:
    """`FOR NO KEY UPDATE`, like every stock change: new basket lines naming it do not wait."""
    return await conn.fetchrow(f"SELECT {VARIANT_COLUMNS} FROM variants WHERE id = $1 FOR NO KEY UPDATE", variant_id)


async def variants_by_id(conn: asyncpg.Connection, variant_ids: list[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(f"SELECT {VARIANT_COLUMNS} FROM variants WHERE id = ANY($1::text[])", variant_ids)
    return {row["id"]: row for row in rows}


async def existing_product_ids(conn: asyncpg.Connection, product_ids: list[str]) -> set[str]:
    rows = await conn.fetch("SELECT id FROM products WHERE id = ANY($1::text[])", product_ids)
    return {row["id"] for row in rows}


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


async def insert_basket_with_lines(
    conn: asyncpg.Connection,
    basket_id: str,
    currency: str,
    meta: dict,
    lines: list[dict[str, Any]],
    customer_id: str | None = None,
    saved_name: str | None = None,
) -> asyncpg.Record:
    """A new basket and its lines (`id`, `variant_id`, `quantity`, `meta`; distinct variants, kept
    in the order given), in one statement; the basket's row. A customer's from now when
    `customer_id` is given; a saved copy when `saved_name` is."""
    return await conn.fetchrow(
        f"""
        WITH created AS (
            INSERT INTO baskets (id, currency, meta, customer_id, owned_at, saved_name)
            VALUES ($1, $2, $3, $5, CASE WHEN $5::text IS NOT NULL THEN now() END, $6)
            RETURNING {BASKET_COLUMNS}
        ),
        added AS (
            INSERT INTO basket_lines (id, basket_id, variant_id, quantity, meta)
            SELECT l.id, created.id, l.variant_id, l.quantity, coalesce(l.meta, '{{}}')
            FROM created,
                ROWS FROM (jsonb_to_recordset($4::jsonb) AS (id text, variant_id text, quantity integer, meta jsonb))
                WITH ORDINALITY AS l(id, variant_id, quantity, meta, n)
            ORDER BY l.n
        )
        SELECT {BASKET_COLUMNS} FROM created
        """,
        basket_id,
        currency,
        meta,
        lines,
        customer_id,
        saved_name,
    )


async def insert_basket(
    conn: asyncpg.Connection, basket_id: str, currency: str, meta: dict, customer_id: str | None = None
) -> asyncpg.Record:
    """A new empty basket; the customer's from now when `customer_id` is given."""
    return await conn.fetchrow(
        "INSERT INTO baskets (id, currency, meta, customer_id, owned_at) "
        f"VALUES ($1, $2, $3, $4, CASE WHEN $4::text IS NOT NULL THEN now() END) RETURNING {BASKET_COLUMNS}",
        basket_id,
        currency,
        meta,
        customer_id,
    )


async def lock_basket(conn: asyncpg.Connection, basket_id: str) -> asyncpg.Record | None:
    """Serialises every change of one basket (concurrent adds of a variant end as one line)."""
    return await conn.fetchrow(f"SELECT {BASKET_COLUMNS} FROM baskets WHERE id = $1 FOR UPDATE", basket_id)


async def touch_basket(
    conn: asyncpg.Connection, basket_id: str, version: int, meta: dict | None = None, currency: str | None = None
) -> asyncpg.Record | None:
    """Compare-and-set on the version read under the lock; optionally replaces meta or currency."""
    return await conn.fetchrow(
        "UPDATE baskets SET version = version + 1, updated_at = now(), meta = COALESCE($3, meta), "
        "currency = COALESCE($4, currency) "
        f"WHERE id = $1 AND version = $2 AND order_id IS NULL RETURNING {BASKET_COLUMNS}",
        basket_id,
        version,
        meta,
        currency,
    )


# A basket's lines, each with its variant's columns and its product's name, in the order added.
_LINES = f"""
    SELECT l.seq, l.id AS line_id, l.quantity AS line_quantity, l.meta AS line_meta,
           p.name AS product_name, {_VARIANT_COLUMNS_V}
    FROM basket_lines l
    JOIN variants v ON v.id = l.variant_id
    JOIN products p ON p.id = v.product_id
"""


async def basket_with_lines(conn: Conn, basket_id: str) -> asyncpg.Record | None:
    """The basket and (as `lines`, a JSON list shaped like `basket_lines` rows) its lines: one
    statement, so one consistent snapshot without a transaction."""
    columns = ", ".join(f"b.{name.strip()}" for name in BASKET_COLUMNS.split(","))
    return await conn.fetchrow(
        f"SELECT {columns}, (SELECT coalesce(json_agg(x ORDER BY x.seq), '[]') "
        f"FROM ({_LINES} WHERE l.basket_id = b.id) x) AS lines FROM baskets b WHERE b.id = $1",
        basket_id,
    )


async def basket_lines(conn: asyncpg.Connection, basket_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(f"{_LINES} WHERE l.basket_id = $1 ORDER BY l.seq", basket_id)


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


async def checkout_in_flight(conn: asyncpg.Connection, basket_id: str) -> bool:
    """Whether a checkout of the basket holds stock (an active reservation): its order is in flight."""
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM stock_reservations WHERE basket_id = $1 AND status = 'active')", basket_id
    )


async def delete_basket(conn: asyncpg.Connection, basket_id: str, version: int) -> bool:
    """Compare-and-set on the version read under the lock; its lines go with it (ON DELETE CASCADE)."""
    deleted = await conn.fetchval(
        "DELETE FROM baskets WHERE id = $1 AND version = $2 AND order_id IS NULL RETURNING id", basket_id, version
    )
    return deleted is not None


# ---------------------------------------------------------------------------------------------
# Baskets of signed-in customers (`customer_baskets.py`)

_B_COLUMNS = ", ".join(f"b.{name.strip()}" for name in BASKET_COLUMNS.split(","))
# Basket b's lines as `basket_with_lines` gives them.
_LINES_OF_B = f"(SELECT coalesce(json_agg(x ORDER BY x.seq), '[]') FROM ({_LINES} WHERE l.basket_id = b.id) x) AS lines"
# The customer's ($1) current basket: the one most recently theirs, neither ordered, merged nor saved.
_CURRENT = """
    SELECT id FROM baskets
    WHERE customer_id = $1 AND order_id IS NULL AND merged_into IS NULL AND saved_name IS NULL
    ORDER BY owned_at DESC, id DESC LIMIT 1
"""


async def lock_customer_baskets(conn: asyncpg.Connection, customer_id: str) -> None:
    """Until the transaction ends: serialises the changes that decide which of a customer's
    baskets is the current one, or that count their saved ones (claim, resolve, save)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('basket.customer:' || $1, 0))", customer_id)


async def current_basket_id(conn: asyncpg.Connection, customer_id: str) -> str | None:
    return await conn.fetchval(_CURRENT, customer_id)


async def current_basket_with_lines(conn: Conn, customer_id: str) -> asyncpg.Record | None:
    """The customer's current basket and its `lines`, in one statement (as `basket_with_lines`)."""
    return await conn.fetchrow(
        f"SELECT {_B_COLUMNS}, {_LINES_OF_B} FROM baskets b WHERE b.id = ({_CURRENT})", customer_id
    )


async def claim_basket(
    conn: asyncpg.Connection, basket_id: str, version: int, customer_id: str
) -> asyncpg.Record | None:
    """The basket is the customer's from now on (compare-and-set on the version read under the lock)."""
    return await conn.fetchrow(
        "UPDATE baskets SET customer_id = $3, owned_at = now(), version = version + 1, updated_at = now() "
        f"WHERE id = $1 AND version = $2 AND order_id IS NULL RETURNING {BASKET_COLUMNS}",
        basket_id,
        version,
        customer_id,
    )


async def mark_merged(conn: asyncpg.Connection, basket_id: str, version: int, into: str) -> asyncpg.Record | None:
    """The basket (emptied by the caller) went into basket `into` (compare-and-set on the version)."""
    return await conn.fetchrow(
        "UPDATE baskets SET merged_into = $3, version = version + 1, updated_at = now() "
        f"WHERE id = $1 AND version = $2 AND order_id IS NULL RETURNING {BASKET_COLUMNS}",
        basket_id,
        version,
        into,
    )


async def count_saved(conn: Conn, customer_id: str) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM baskets WHERE customer_id = $1 AND saved_name IS NOT NULL", customer_id
    )


async def saved_baskets_page(conn: Conn, customer_id: str, limit: int, offset: int) -> list[asyncpg.Record]:
    """The customer's saved baskets with their `lines`, newest first."""
    return await conn.fetch(
        f"SELECT {_B_COLUMNS}, {_LINES_OF_B} FROM baskets b "
        "WHERE b.customer_id = $1 AND b.saved_name IS NOT NULL ORDER BY b.created_at DESC, b.id DESC "
        "LIMIT $2 OFFSET $3",
        customer_id,
        limit,
        offset,
    )


async def rename_saved(conn: asyncpg.Connection, basket_id: str, customer_id: str, name: str) -> asyncpg.Record | None:
    """None when the customer has no saved basket of that id."""
    return await conn.fetchrow(
        "UPDATE baskets SET saved_name = $3, version = version + 1, updated_at = now() "
        f"WHERE id = $1 AND customer_id = $2 AND saved_name IS NOT NULL RETURNING {BASKET_COLUMNS}",
        basket_id,
        customer_id,
        name,
    )


async def delete_saved(conn: asyncpg.Connection, basket_id: str, customer_id: str) -> bool:
    """Its lines go with it (ON DELETE CASCADE); False when the customer has no saved basket of that id."""
    deleted = await conn.fetchval(
        "DELETE FROM baskets WHERE id = $1 AND customer_id = $2 AND saved_name IS NOT NULL RETURNING id",
        basket_id,
        customer_id,
    )
    return deleted is not None
