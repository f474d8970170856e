"""All SQL of the basket service, with explicit column lists. Tables live in the service's schema
(the pool's search_path), so names are unqualified."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from shared import outbox

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


async def product_with_variants(conn: asyncpg.Connection, product_id: str) -> asyncpg.Record | None:
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


async def insert_basket_with_lines(
    conn: Conn,
    basket_id: str,
    currency: str,
    meta: dict,
    lines: list[dict[str, Any]],
    event: outbox.Outgoing,
) -> asyncpg.Record:
    """A new basket, its lines (`id`, `variant_id`, `quantity`, `meta`; distinct variants, in the
    order given) and the event announcing it, in one statement (atomic without a transaction);
    the basket's row, as `touch_basket` returns it."""
    return await conn.fetchrow(
        f"""
        WITH created AS (
            INSERT INTO baskets (id, currency, meta) VALUES ($1, $2, $3) RETURNING {BASKET_COLUMNS}
        ),
        added AS (
            INSERT INTO basket_lines (id, basket_id, variant_id, quantity, meta)
            SELECT l.id, created.id, l.variant_id, l.quantity, coalesce(l.meta, '{{}}')
            FROM created,
                ROWS FROM (jsonb_to_recordset($4::jsonb) AS (id text, variant_id text, quantity integer, meta jsonb))
                WITH ORDINALITY AS l(id, variant_id, quantity, meta, n)
            ORDER BY l.n
        ),
        {event.cte("announced", 5, "created")}
        SELECT {BASKET_COLUMNS} FROM created
        """,
        basket_id,
        currency,
        meta,
        lines,
        *event.values,
    )


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


_LINES_OF_B = f"""
    (SELECT coalesce(json_agg(x ORDER BY x.seq), '[]') FROM (
        SELECT l.seq, l.id AS line_id, l.quantity AS line_quantity, l.meta AS line_meta,
               p.name AS product_name, {_VARIANT_COLUMNS_V}
        FROM basket_lines l
        JOIN variants v ON v.id = l.variant_id
        JOIN products p ON p.id = v.product_id
        WHERE l.basket_id = b.id
    ) x) AS lines
"""


async def basket_with_lines(conn: asyncpg.Connection, basket_id: str) -> asyncpg.Record | None:
    """The basket and (as `lines`, a JSON list shaped like `basket_lines` rows) its lines: one
    statement, so one consistent snapshot without a transaction."""
    columns = ", ".join(f"b.{name.strip()}" for name in BASKET_COLUMNS.split(","))
    return await conn.fetchrow(f"SELECT {columns}, {_LINES_OF_B} FROM baskets b WHERE b.id = $1", basket_id)


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


async def insert_reservation_locking_stock(
    conn: asyncpg.Connection,
    *,
    reservation_id: str,
    order_id: str,
    attempt_id: uuid.UUID,
    basket_id: str,
    ttl_seconds: float,
    correlation_id: str | None,
    variant_ids: list[str],
) -> tuple[asyncpg.Record | None, list[asyncpg.Record]]:
    """An active reservation's header, then its variants locked, in id order (the one order every
    stock change takes: no deadlocks): one round trip.

    `FOR NO KEY UPDATE`, like every stock change: no key changes, so the foreign-key checks of new
    basket lines (`KEY SHARE`, taken in the basket's own line order) never wait on it. `reserved`
    is what active reservations hold, current as of the lock.

    The header comes first: a concurrent twin of this attempt waits on its unique key, before it
    could count our lines as someone else's reservation, and locks nothing. Returns (None, [])
    when the attempt already has its reservation; else the header and the locked variants
    (`variant_id`, `sku`, `purchasable`, `backorder`, `inventory`, `incoming`, `reserved`)."""
    rows = await conn.fetch(
        f"""
        WITH r AS (
            INSERT INTO stock_reservations (id, order_id, attempt_id, basket_id, status, correlation_id, expires_at)
            VALUES ($1, $2, $3, $4, 'active', $5, now() + make_interval(secs => $6))
            ON CONFLICT (order_id, attempt_id) DO NOTHING
            RETURNING {RESERVATION_COLUMNS}
        )
        SELECT r.*, v.variant_id, v.sku, v.purchasable, v.backorder, v.inventory, v.incoming, v.reserved
        FROM r LEFT JOIN LATERAL (
            SELECT id AS variant_id, sku, purchasable, backorder, inventory, incoming, reserved FROM variants
            WHERE id = ANY($7::text[]) ORDER BY id FOR NO KEY UPDATE
        ) v ON true
        """,
        reservation_id,
        order_id,
        attempt_id,
        basket_id,
        correlation_id,
        float(ttl_seconds),
        variant_ids,
    )
    if not rows:
        return None, []
    return rows[0], [row for row in rows if row["variant_id"] is not None]


async def reservation_for_attempt(
    conn: asyncpg.Connection, order_id: str, attempt_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {RESERVATION_COLUMNS} FROM stock_reservations WHERE order_id = $1 AND attempt_id = $2 FOR UPDATE",
        order_id,
        attempt_id,
    )


def hold_stock(reservation_id: str, lines: list[tuple[str, str, int]]) -> tuple[str, tuple[Any, ...]]:
    """An active reservation's lines, and what they hold added to their (locked) variants, as the
    CTE `held` (and `holding`) of the event handler's closing statement (`HandlerContext.write`).

    `lines`: (variant_id, sku, quantity), one per variant."""
    return (
        """
        held AS (
            INSERT INTO stock_reservation_lines (reservation_id, variant_id, sku, quantity)
            SELECT $1, variant_id, sku, quantity
            FROM fresh, unnest($2::text[], $3::text[], $4::int[]) AS t(variant_id, sku, quantity)
            RETURNING variant_id, quantity
        ),
        holding AS (
            UPDATE variants v SET reserved = v.reserved + held.quantity FROM held WHERE v.id = held.variant_id
            RETURNING v.id
        )
        """,
        (reservation_id, [line[0] for line in lines], [line[1] for line in lines], [line[2] for line in lines]),
    )


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


async def reservation_with_lines(
    conn: asyncpg.Connection, order_id: str, attempt_id: uuid.UUID
) -> asyncpg.Record | None:
    """`reservation_for_attempt` (locked) with its `lines` (JSON, in variant id order)."""
    return await conn.fetchrow(
        f"""
        SELECT {RESERVATION_COLUMNS},
            (SELECT coalesce(json_agg(l ORDER BY l.variant_id), '[]')
             FROM (SELECT variant_id, sku, quantity FROM stock_reservation_lines WHERE reservation_id = r.id) l
            ) AS lines
        FROM stock_reservations r WHERE order_id = $1 AND attempt_id = $2
        FOR UPDATE OF r
        """,
        order_id,
        attempt_id,
    )


def commit_and_sell(
    reservation: Any, lines: list[tuple[str, str, int]], *, basket_id: str, order_id: str
) -> tuple[str, tuple[Any, ...]]:
    """The reservation committed (compare-and-set on the status and version read under its lock;
    a reservation inserted `committed` by this transaction passes as is), its lines sold
    (inventory down and, for an active reservation, what it held given back), the basket marked
    used: the CTE `committed` (and its followers) of the event handler's closing statement
    (`HandlerContext.write`). Variants are locked in id order."""
    return (
        """
        committed AS (
            UPDATE stock_reservations SET status = 'committed', committed_at = now(), updated_at = now(),
                version = version + 1
            WHERE id = $1 AND status = $2 AND (version = $3 OR status = 'committed')
                AND EXISTS (SELECT 1 FROM fresh)
            RETURNING id
        ),
        sold AS (
            SELECT t.variant_id, t.quantity FROM unnest($4::text[], $5::int[]) AS t(variant_id, quantity)
            WHERE EXISTS (SELECT 1 FROM committed)
        ),
        locked AS (
            SELECT v.id FROM variants v JOIN sold ON sold.variant_id = v.id ORDER BY v.id FOR NO KEY UPDATE OF v
        ),
        stock AS (
            UPDATE variants v SET inventory = v.inventory - sold.quantity,
                reserved = v.reserved - CASE WHEN $2 = 'active' THEN sold.quantity ELSE 0 END,
                updated_at = now(), version = v.version + 1
            FROM sold JOIN locked ON locked.id = sold.variant_id
            WHERE v.id = sold.variant_id
            RETURNING v.id
        ),
        used AS (
            UPDATE baskets SET order_id = $7, used_at = now(), updated_at = now(), version = version + 1
            WHERE id = $6 AND order_id IS NULL AND EXISTS (SELECT 1 FROM committed)
            RETURNING id
        )
        """,
        (
            reservation["id"],
            reservation["status"],
            reservation["version"],
            [line[0] for line in lines],
            [line[2] for line in lines],
            basket_id,
            order_id,
        ),
    )


async def set_refused(conn: asyncpg.Connection, reservation_id: str, errors: dict[str, list[str]]) -> None:
    await conn.execute(
        "UPDATE stock_reservations SET status = 'refused', errors = $2, updated_at = now(), version = version + 1 "
        "WHERE id = $1 AND status = 'active'",
        reservation_id,
        errors,
    )


async def release_reservation(conn: asyncpg.Connection, reservation_id: str, version: int, reason: str) -> bool:
    """active -> released (compare-and-set), what it held given back to its variants (locked in
    id order); one statement."""
    return await conn.fetchval(
        """
        WITH released AS (
            UPDATE stock_reservations SET status = 'released', release_reason = $3, released_at = now(),
                updated_at = now(), version = version + 1
            WHERE id = $1 AND status = 'active' AND version = $2
            RETURNING id
        ),
        held AS (
            SELECT l.variant_id, l.quantity
            FROM stock_reservation_lines l JOIN released ON released.id = l.reservation_id
        ),
        locked AS (
            SELECT v.id FROM variants v JOIN held ON held.variant_id = v.id ORDER BY v.id FOR NO KEY UPDATE OF v
        ),
        freed AS (
            UPDATE variants v SET reserved = v.reserved - held.quantity
            FROM held JOIN locked ON locked.id = held.variant_id
            WHERE v.id = held.variant_id
            RETURNING v.id
        )
        SELECT EXISTS (SELECT 1 FROM released)
        """,
        reservation_id,
        version,
        reason,
    )


async def any_expired_reservation(conn: Conn) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM stock_reservations WHERE status = 'active' AND expires_at <= now())"
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
