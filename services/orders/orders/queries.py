"""The SQL of orders and their lines: plain functions taking a connection, explicit columns.

Every change of an order runs in a unit of work that holds the order's row lock (`lock_order`)
and bumps its version; the statements here do not check again what the caller checked under it.
The checkout attempts and the transactions projection are in `attempt_queries.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from orders import domain
from shared.http import new_id

Conn = asyncpg.Connection | asyncpg.Pool

ORDER_COLUMNS = """
    id, basket_id, status, version, type, currency, sub_total, delivery_total, discount_total,
    tax_total, order_total, weight_grams, basket_totals, shipping_details, billing_details,
    contact_details, shipping_method, shipping_preference, shipping_price_id, display_id,
    reference, invoice_reference, customer_reference, notes, meta, tracking_no, attempt_id,
    placed_at, dispatched_at, created_at, updated_at, customer_id, discounts, base_currency, conversion
"""
O_ORDER_COLUMNS = ", ".join(f"o.{name.strip()}" for name in ORDER_COLUMNS.split(","))

LINE_COLUMNS = """
    id, order_id, position, variant_id, product_id, sku, description, option, quantity, unit_price,
    unit_qty, line_total, tax_total, tax_rate, discount_total, delivery_total, is_shipping,
    is_manual, requires_shipping, weight_grams, meta
"""

# The order's lines as a JSON array beside its columns (a list of dicts once decoded): one round
# trip for what a checkout needs.
LINES_JSON = f"""
    (SELECT coalesce(json_agg(l ORDER BY l.is_shipping, l.position, l.id), '[]')
     FROM (SELECT {LINE_COLUMNS} FROM order_lines WHERE order_id = o.id) l) AS lines
"""


# ---------------------------------------------------------------------------------------------
# Orders: reads


async def get_order(conn: Conn, order_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1", order_id)


async def get_order_with_lines(conn: Conn, order_id: str) -> asyncpg.Record | None:
    """The order's columns and its `lines` (a list of dicts)."""
    return await conn.fetchrow(f"SELECT {O_ORDER_COLUMNS}, {LINES_JSON} FROM orders o WHERE o.id = $1", order_id)


async def lock_order(conn: asyncpg.Connection, order_id: str) -> asyncpg.Record | None:
    """The order, locked until the unit of work ends: every change of an order starts here."""
    return await conn.fetchrow(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 FOR UPDATE", order_id)


async def basket_order(conn: Conn, basket_id: str) -> asyncpg.Record | None:
    """The basket's one order that has not expired, placed or not (the unique index)."""
    return await conn.fetchrow(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE basket_id = $1 AND status <> $2", basket_id, domain.EXPIRED
    )


async def list_orders(
    conn: Conn,
    *,
    statuses: Sequence[str] | None,
    placed_only: bool,
    date_from: datetime | None,
    date_to: datetime | None,
    limit: int,
    offset: int,
    customer_id: str | None = None,
) -> tuple[int, list[asyncpg.Record]]:
    """One page of orders, newest first, and how many match. A filter left out (None, empty,
    False) matches every order; `customer_id`: only that customer's."""
    where = """
        WHERE (cardinality($1::text[]) = 0 OR status = ANY($1::text[]))
            AND (cardinality($1::text[]) > 0 OR NOT $2 OR placed_at IS NOT NULL)
            AND ($3::timestamptz IS NULL OR coalesce(placed_at, created_at) >= $3)
            AND ($4::timestamptz IS NULL OR coalesce(placed_at, created_at) < $4)
            AND ($5::text IS NULL OR customer_id = $5)
    """
    args = (list(statuses or ()), placed_only, date_from, date_to, customer_id)
    total = await conn.fetchval(f"SELECT count(*) FROM orders {where}", *args)
    rows = await conn.fetch(
        f"SELECT {ORDER_COLUMNS} FROM orders {where} "
        "ORDER BY coalesce(placed_at, created_at) DESC, id LIMIT $6 OFFSET $7",
        *args,
        limit,
        offset,
    )
    return total, rows


# ---------------------------------------------------------------------------------------------
# Orders: writes


_GOODS_COLUMNS = """
    variant_id, product_id, sku, description, option, quantity, unit_price, unit_qty, line_total, tax_total,
    tax_rate, discount_total, requires_shipping, weight_grams
"""
_GOODS_RECORD = """
    id text, position integer, variant_id text, product_id text, sku text, description text, option text,
    quantity integer, unit_price bigint, unit_qty integer, line_total bigint, tax_total bigint, tax_rate integer,
    discount_total bigint, requires_shipping boolean, weight_grams bigint
"""


def _goods_rows(lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": new_id(), "position": position, **line} for position, line in enumerate(lines, start=1)]


async def create_order(
    conn: asyncpg.Connection,
    *,
    order_id: str,
    basket_id: str,
    currency: str,
    base_currency: str | None,
    conversion: Decimal,
    order_type: str | None,
    weight_grams: int,
    basket_totals: dict[str, Any],
    totals: domain.Totals,
    customer_id: str | None = None,
) -> asyncpg.Record | None:
    """A new order of the basket (awaiting payment, no lines yet), the customer's if one is given;
    None, and nothing written, when the basket has an order that has not expired, placed or not.
    `conversion`: units of `currency` per unit of `base_currency` its prices were converted at.

    The unique index decides, and it sees rows not yet committed: a create racing another create,
    or a placement, waits for it and then finds its order.
    """
    return await conn.fetchrow(
        f"""
        INSERT INTO orders (id, basket_id, status, type, currency, display_id, weight_grams, basket_totals,
            sub_total, delivery_total, discount_total, tax_total, order_total, customer_id, base_currency,
            conversion)
        SELECT $1, $2, $3, $4, $5, '#ORD-' || lpad(n.v::text, greatest(4, length(n.v::text)), '0'),
            $6, $7, $8, $9, $10, $11, $12, $13, $14, $15
        FROM (SELECT nextval('order_display_seq') AS v) n
        ON CONFLICT (basket_id) WHERE status <> 'expired' DO NOTHING
        RETURNING {ORDER_COLUMNS}
        """,
        order_id,
        basket_id,
        domain.AWAITING_PAYMENT,
        order_type,
        currency,
        weight_grams,
        basket_totals,
        totals.sub_total,
        totals.delivery_total,
        totals.discount_total,
        totals.tax_total,
        totals.order_total,
        customer_id,
        base_currency,
        conversion,
    )


async def replace_goods_lines(conn: asyncpg.Connection, order_id: str, lines: Sequence[dict[str, Any]]) -> None:
    """The basket snapshot's lines replace the order's goods lines; its shipping line stays."""
    await conn.execute("DELETE FROM order_lines WHERE order_id = $1 AND NOT is_shipping", order_id)
    await add_goods_lines(conn, order_id, lines)


async def add_goods_lines(conn: asyncpg.Connection, order_id: str, lines: Sequence[dict[str, Any]]) -> None:
    """The basket snapshot's lines (dicts of the goods columns) as the order's goods lines."""
    await conn.execute(
        f"""
        INSERT INTO order_lines (id, order_id, position, {_GOODS_COLUMNS})
        SELECT l.id, $1, l.position, {", ".join(f"l.{c.strip()}" for c in _GOODS_COLUMNS.split(","))}
        FROM jsonb_to_recordset($2::jsonb) AS l({_GOODS_RECORD})
        """,
        order_id,
        _goods_rows(lines),
    )


async def sync_basket(
    conn: asyncpg.Connection,
    order_id: str,
    *,
    currency: str,
    base_currency: str | None,
    conversion: Decimal,
    weight_grams: int,
    basket_totals: dict[str, Any],
    order_type: str | None,
    customer_id: str | None = None,
) -> None:
    """The basket's currency and the rate its prices were converted at (it may have changed
    currency since); a guest's order becomes the customer's when one is given (its basket was
    claimed since)."""
    await conn.execute(
        """
        UPDATE orders SET currency = $2, weight_grams = $3, basket_totals = $4, type = coalesce($5, type),
            customer_id = coalesce(customer_id, $6), base_currency = $7, conversion = $8,
            version = version + 1, updated_at = now()
        WHERE id = $1
        """,
        order_id,
        currency,
        weight_grams,
        basket_totals,
        order_type,
        customer_id,
        base_currency,
        conversion,
    )


async def set_discounts(conn: asyncpg.Connection, order_id: str, discounts: list[dict[str, Any]]) -> asyncpg.Record:
    """The discounts the order uses (from its basket's snapshot); returns the order."""
    return await conn.fetchrow(
        f"UPDATE orders SET discounts = $2, version = version + 1, updated_at = now() WHERE id = $1 "
        f"RETURNING {ORDER_COLUMNS}",
        order_id,
        discounts,
    )


async def has_free_shipping(conn: asyncpg.Connection, order_id: str) -> bool:
    """Whether one of the order's discounts waives its shipping."""
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM orders, jsonb_array_elements(discounts) d "
        "WHERE id = $1 AND (d ->> 'free_shipping')::boolean)",
        order_id,
    )


DETAIL_COLUMNS = {"shipping": "shipping_details", "billing": "billing_details", "contact": "contact_details"}


async def set_detail(conn: asyncpg.Connection, order_id: str, kind: str, value: dict[str, Any]) -> asyncpg.Record:
    """An address (`shipping`, `billing`) or the `contact` of the order; returns the order."""
    return await conn.fetchrow(
        f"""
        UPDATE orders SET {DETAIL_COLUMNS[kind]} = $2, version = version + 1, updated_at = now()
        WHERE id = $1
        RETURNING {ORDER_COLUMNS}
        """,
        order_id,
        value,
    )


async def put_shipping_line(conn: asyncpg.Connection, order_id: str, line: domain.ShippingLine | None) -> None:
    """Set (or, for None, remove) the order's one shipping line."""
    if line is None:
        await conn.execute("DELETE FROM order_lines WHERE order_id = $1 AND is_shipping", order_id)
        return
    # The partial unique index (one shipping line per order) is the arbiter: replace in place.
    await conn.execute(
        """
        INSERT INTO order_lines (id, order_id, position, sku, description, option, quantity, unit_price,
            unit_qty, line_total, tax_total, tax_rate, discount_total, is_shipping, requires_shipping)
        VALUES ($2, $1, 0, $3, $4, $5, 1, $6, 1, $7, $8, $9, $10, true, false)
        ON CONFLICT (order_id) WHERE is_shipping DO UPDATE SET sku = EXCLUDED.sku,
            description = EXCLUDED.description, option = EXCLUDED.option, unit_price = EXCLUDED.unit_price,
            line_total = EXCLUDED.line_total, tax_total = EXCLUDED.tax_total, tax_rate = EXCLUDED.tax_rate,
            discount_total = EXCLUDED.discount_total
        """,
        order_id,
        new_id(),
        line.sku,
        line.description,
        line.option,
        line.unit_price,
        line.line_total,
        line.tax_total,
        line.tax_rate,
        line.discount_total,
    )


async def line_amounts(conn: asyncpg.Connection, order_id: str) -> list[domain.LineAmounts]:
    rows = await conn.fetch(
        "SELECT line_total, tax_total, discount_total, is_shipping FROM order_lines WHERE order_id = $1", order_id
    )
    return [domain.LineAmounts(r["line_total"], r["tax_total"], r["discount_total"], r["is_shipping"]) for r in rows]


async def set_shipping_and_totals(
    conn: asyncpg.Connection,
    order_id: str,
    *,
    method: str | None,
    preference: str | None,
    price_id: str | None,
    totals: domain.Totals,
) -> asyncpg.Record:
    """The chosen shipping price (all None: none) and the totals it leads to; returns the order."""
    return await conn.fetchrow(
        f"""
        UPDATE orders SET shipping_method = $2, shipping_preference = $3, shipping_price_id = $4,
            sub_total = $5, delivery_total = $6, discount_total = $7, tax_total = $8, order_total = $9,
            version = version + 1, updated_at = now()
        WHERE id = $1
        RETURNING {ORDER_COLUMNS}
        """,
        order_id,
        method,
        preference,
        price_id,
        totals.sub_total,
        totals.delivery_total,
        totals.discount_total,
        totals.tax_total,
        totals.order_total,
    )


async def change_status(
    conn: asyncpg.Connection,
    order_id: str,
    status: str,
    *,
    tracking_no: str | None = None,
    dispatched_at: datetime | None = None,
) -> asyncpg.Record:
    """A status change the caller checked against `domain` under the order's lock; returns the order."""
    return await conn.fetchrow(
        f"""
        UPDATE orders SET status = $2, version = version + 1, updated_at = now(),
            tracking_no = coalesce($3, tracking_no), dispatched_at = coalesce(dispatched_at, $4)
        WHERE id = $1
        RETURNING {ORDER_COLUMNS}
        """,
        order_id,
        status,
        tracking_no,
        dispatched_at,
    )


async def set_tracking_no(conn: asyncpg.Connection, order_id: str, tracking_no: str) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""
        UPDATE orders SET tracking_no = $2, version = version + 1, updated_at = now()
        WHERE id = $1
        RETURNING {ORDER_COLUMNS}
        """,
        order_id,
        tracking_no,
    )


async def start_processing(
    conn: asyncpg.Connection,
    order_id: str,
    *,
    attempt_id: Any,
    notes: str | None,
    customer_reference: str | None,
    meta: Any,
) -> None:
    """The order enters payment-processing with its new attempt (the in-flight one)."""
    await conn.execute(
        """
        UPDATE orders SET status = $2, attempt_id = $3, notes = coalesce($4, notes),
            customer_reference = coalesce($5, customer_reference), meta = coalesce($6, meta),
            version = version + 1, updated_at = now()
        WHERE id = $1
        """,
        order_id,
        domain.PAYMENT_PROCESSING,
        attempt_id,
        notes,
        customer_reference,
        meta,
    )


async def place_order(
    conn: asyncpg.Connection,
    order_id: str,
    *,
    status: str,
    placed_at: datetime,
    reference: str,
    invoice_reference: str,
    order_type: str,
) -> None:
    await conn.execute(
        """
        UPDATE orders SET status = $2, placed_at = $3, reference = $4, invoice_reference = $5,
            type = coalesce(type, $6), version = version + 1, updated_at = now()
        WHERE id = $1
        """,
        order_id,
        status,
        placed_at,
        reference,
        invoice_reference,
        order_type,
    )


async def next_reference_number(conn: asyncpg.Connection, period: str) -> int:
    """The month's next reference number, taken in the placing transaction: a rollback gives it
    back (gap-free), and concurrent placements queue on the counter's row."""
    return await conn.fetchval(
        """
        INSERT INTO reference_counters (period, last_value) VALUES ($1, 1)
        ON CONFLICT (period) DO UPDATE SET last_value = reference_counters.last_value + 1
        RETURNING last_value
        """,
        period,
    )


async def notify_outcome(conn: asyncpg.Connection, order_id: str) -> None:
    """Wakes the replica whose `POST /orders/process` waits on this order (sent on commit)."""
    await conn.execute("SELECT pg_notify(current_schema() || '_outcome', $1)", order_id)


# ---------------------------------------------------------------------------------------------
# Lines


async def get_lines(conn: Conn, order_id: str) -> list[asyncpg.Record]:
    """The order's lines (a statement of their own: under the order's lock they are as committed
    last, where a subquery of the locking statement would see them as they were before the wait)."""
    return await get_lines_for(conn, [order_id])


async def get_lines_for(conn: Conn, order_ids: Sequence[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {LINE_COLUMNS} FROM order_lines WHERE order_id = ANY($1::text[]) ORDER BY is_shipping, position, id",
        list(order_ids),
    )


# ---------------------------------------------------------------------------------------------
# Order types and countries


async def placed_order_types(conn: Conn, limit: int) -> list[str]:
    """The distinct types of placed orders, in order: one index probe per type (a skip scan on
    `orders_placed_type`), however many orders there are."""
    return [
        row["type"]
        for row in await conn.fetch(
            """
            WITH RECURSIVE types AS (
                (SELECT type FROM orders WHERE placed_at IS NOT NULL AND type IS NOT NULL ORDER BY type LIMIT 1)
                UNION ALL
                SELECT (SELECT o.type FROM orders o WHERE o.placed_at IS NOT NULL AND o.type > t.type
                        ORDER BY o.type LIMIT 1)
                FROM types t WHERE t.type IS NOT NULL
            )
            SELECT type FROM types WHERE type IS NOT NULL LIMIT $1
            """,
            limit,
        )
    ]


COUNTRY_COLUMNS = "alpha_2, enabled, preferred"


async def country_flags(conn: Conn) -> dict[str, asyncpg.Record]:
    """The flags an admin has set, by alpha-2 code (a country without a row has the defaults)."""
    return {row["alpha_2"]: row for row in await conn.fetch(f"SELECT {COUNTRY_COLUMNS} FROM countries")}


async def country_flags_of(conn: Conn, alpha_2: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {COUNTRY_COLUMNS} FROM countries WHERE alpha_2 = $1", alpha_2)


async def set_country_flags(
    conn: asyncpg.Connection, alpha_2: str, enabled: bool | None, preferred: bool | None
) -> asyncpg.Record:
    """Sets the flags given (None: unchanged; a country without a row starts from the defaults) in
    one statement, so that concurrent changes of different flags are all kept."""
    return await conn.fetchrow(
        f"""
        INSERT INTO countries AS c (alpha_2, enabled, preferred)
        VALUES ($1, coalesce($2::boolean, $4::boolean), coalesce($3::boolean, $5::boolean))
        ON CONFLICT (alpha_2) DO UPDATE SET enabled = coalesce($2, c.enabled), preferred = coalesce($3, c.preferred),
            updated_at = now()
        RETURNING {COUNTRY_COLUMNS}
        """,
        alpha_2,
        enabled,
        preferred,
        domain.ENABLED_BY_DEFAULT,
        domain.PREFERRED_BY_DEFAULT,
    )


# ---------------------------------------------------------------------------------------------
# Invoices


async def get_invoice_document(conn: Conn, order_id: str) -> bytes | None:
    return await conn.fetchval("SELECT document FROM invoices WHERE order_id = $1", order_id)


async def issue_invoice(conn: Conn, order_id: str, reference: str, document: bytes) -> bytes:
    """Keeps the first document issued for the order and returns it (a concurrent first request
    may have issued its own a moment before: then that one is the invoice)."""
    return await conn.fetchval(
        """
        WITH issued AS (
            INSERT INTO invoices (order_id, reference, document) VALUES ($1, $2, $3)
            ON CONFLICT (order_id) DO NOTHING
            RETURNING document
        )
        SELECT document FROM issued
        UNION ALL
        SELECT document FROM invoices WHERE order_id = $1
        LIMIT 1
        """,
        order_id,
        reference,
        document,
    )
