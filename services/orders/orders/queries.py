"""All SQL of the orders service; explicit column lists, compare-and-set for every state change."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from orders import domain
from shared import outbox
from shared.http import new_id

Conn = asyncpg.Connection | asyncpg.Pool

ORDER_COLUMNS = """
    id, basket_id, status, version, type, currency, sub_total, delivery_total, discount_total,
    tax_total, order_total, weight_grams, basket_totals, shipping_details, billing_details,
    contact_details, shipping_method, shipping_preference, shipping_price_id, display_id,
    reference, invoice_reference, customer_reference, notes, meta, tracking_no, attempt_id,
    placed_at, dispatched_at, created_at, updated_at
"""

LINE_COLUMNS = """
    id, order_id, position, variant_id, product_id, sku, description, option, quantity, unit_price,
    unit_qty, line_total, tax_total, tax_rate, discount_total, delivery_total, is_shipping,
    is_manual, requires_shipping, weight_grams, meta
"""

ATTEMPT_COLUMNS = """
    attempt_id, order_id, stage, payment_type_id, payment_type_name, payment_type_handle,
    payment_driver, success_status, payment_token, amount, currency, reservation_id, reason,
    errors, created_at, updated_at
"""

TRANSACTION_COLUMNS = """
    id, order_id, attempt_id, transaction_id, merchant, amount, currency, provider, driver,
    success, refund, status, card_type, last_four, notes, created_at
"""

IN_FLIGHT_STAGES = ("stock_requested", "charge_requested")


# ---------------------------------------------------------------------------------------------
# Orders: reads


async def get_order(conn: Conn, order_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1", order_id)


# The order's lines (and transactions) as JSON arrays beside its columns: one round trip for
# what a response or a checkout needs. `lines` / `transactions` are lists of dicts.
_LINES_JSON = f"""
    (SELECT coalesce(json_agg(l ORDER BY l.is_shipping, l.position, l.id), '[]')
     FROM (SELECT {LINE_COLUMNS} FROM order_lines WHERE order_id = o.id) l) AS lines
"""
_TRANSACTIONS_JSON = f"""
    (SELECT coalesce(json_agg(t ORDER BY t.created_at, t.id), '[]')
     FROM (SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE order_id = o.id) t) AS transactions
"""
_O_ORDER_COLUMNS = ", ".join(f"o.{name.strip()}" for name in ORDER_COLUMNS.split(","))


def _related(lines: bool, transactions: bool) -> str:
    parts = [_LINES_JSON if lines else "NULL::json AS lines"]
    parts.append(_TRANSACTIONS_JSON if transactions else "NULL::json AS transactions")
    return ", ".join(parts)


def transactions_of(row: asyncpg.Record) -> list[dict[str, Any]]:
    """The transactions of a row read with `transactions=True`, timestamps as datetimes again."""
    return [tx | {"created_at": datetime.fromisoformat(tx["created_at"])} for tx in row["transactions"] or []]


async def get_order_with(
    conn: Conn, order_id: str, *, lines: bool = False, transactions: bool = False
) -> asyncpg.Record | None:
    """The order's columns plus `lines` and `transactions` (JSON, or NULL when not asked for)."""
    return await conn.fetchrow(
        f"SELECT {_O_ORDER_COLUMNS}, {_related(lines, transactions)} FROM orders o WHERE o.id = $1", order_id
    )


async def lock_order(conn: asyncpg.Connection, order_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 FOR UPDATE", order_id)


async def basket_orders(conn: Conn, basket_id: str) -> tuple[bool, asyncpg.Record | None]:
    """Whether the basket has a placed order, and its open order if any: one round trip."""
    row = await conn.fetchrow(
        f"""
        SELECT EXISTS (SELECT 1 FROM orders WHERE basket_id = $1 AND placed_at IS NOT NULL) AS placed, o.id AS open_id,
            {_O_ORDER_COLUMNS}
        FROM (SELECT 1) one
        LEFT JOIN orders o ON o.basket_id = $1 AND o.placed_at IS NULL AND o.status <> 'expired'
        """,
        basket_id,
    )
    return row["placed"], (row if row["open_id"] is not None else None)


async def open_order_for_basket(conn: Conn, basket_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE basket_id = $1 AND placed_at IS NULL AND status <> 'expired'",
        basket_id,
    )


async def basket_has_placed_order(conn: Conn, basket_id: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM orders WHERE basket_id = $1 AND placed_at IS NOT NULL)", basket_id
        )
    )


def _listing_filter(
    statuses: Sequence[str] | None, placed_only: bool, date_from: datetime | None, date_to: datetime | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if statuses:
        args.append(list(statuses))
        clauses.append(f"status = ANY(${len(args)}::text[])")
    elif placed_only:
        clauses.append("placed_at IS NOT NULL")
    if date_from is not None:
        args.append(date_from)
        clauses.append(f"coalesce(placed_at, created_at) >= ${len(args)}")
    if date_to is not None:
        args.append(date_to)
        clauses.append(f"coalesce(placed_at, created_at) < ${len(args)}")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


async def list_orders(
    conn: Conn,
    *,
    statuses: Sequence[str] | None,
    placed_only: bool,
    date_from: datetime | None,
    date_to: datetime | None,
    limit: int,
    offset: int,
) -> tuple[int, list[asyncpg.Record]]:
    where, args = _listing_filter(statuses, placed_only, date_from, date_to)
    total = await conn.fetchval(f"SELECT count(*) FROM orders{where}", *args)
    rows = await conn.fetch(
        f"SELECT {ORDER_COLUMNS} FROM orders{where} "
        f"ORDER BY coalesce(placed_at, created_at) DESC, id LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
        *args,
        limit,
        offset,
    )
    return total, rows


# ---------------------------------------------------------------------------------------------
# Orders: writes


_LINE_RECORD = """
    id text, position integer, variant_id text, product_id text, sku text, description text, option text,
    quantity integer, unit_price bigint, unit_qty integer, line_total bigint, tax_total bigint, tax_rate integer,
    discount_total bigint, requires_shipping boolean, weight_grams bigint
"""


def _goods_rows(lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": new_id(),
            "position": position,
            **{name: line[name] for name in _GOODS_FIELDS},
        }
        for position, line in enumerate(lines, start=1)
    ]


_GOODS_FIELDS = (
    "variant_id",
    "product_id",
    "sku",
    "description",
    "option",
    "quantity",
    "unit_price",
    "unit_qty",
    "line_total",
    "tax_total",
    "tax_rate",
    "discount_total",
    "requires_shipping",
    "weight_grams",
)


async def create_order(
    conn: Conn,
    *,
    order_id: str,
    basket_id: str,
    currency: str,
    order_type: str | None,
    weight_grams: int,
    basket_totals: dict[str, Any],
    totals: domain.Totals,
    lines: Sequence[dict[str, Any]],
    event: outbox.Outgoing,
) -> asyncpg.Record | None:
    """The basket's open order with its goods lines, totals and the `event` announcing it, in one
    statement; None (and nothing written) when the basket has an open order already (the partial
    unique index) or a placed one.

    Run under `lock_basket`: the check for a placed order is only good while that lock is held.
    """
    return await conn.fetchrow(
        f"""
        WITH n AS (SELECT nextval('order_display_seq') AS v),
        created AS (
            INSERT INTO orders (id, basket_id, status, type, currency, display_id, weight_grams, basket_totals,
                sub_total, delivery_total, discount_total, tax_total, order_total)
            SELECT $1, $2, $3, $4, $5, '#ORD-' || lpad(n.v::text, greatest(4, length(n.v::text)), '0'),
                $6, $7, $8, $9, $10, $11, $12
            FROM n
            ON CONFLICT (basket_id) WHERE status <> 'expired' DO NOTHING
            RETURNING {ORDER_COLUMNS}
        ),
        goods AS (
            INSERT INTO order_lines (id, order_id, position, variant_id, product_id, sku, description, option,
                quantity, unit_price, unit_qty, line_total, tax_total, tax_rate, discount_total, requires_shipping,
                weight_grams)
            SELECT l.id, created.id, l.position, l.variant_id, l.product_id, l.sku, l.description, l.option,
                l.quantity, l.unit_price, l.unit_qty, l.line_total, l.tax_total, l.tax_rate, l.discount_total,
                l.requires_shipping, l.weight_grams
            FROM created, jsonb_to_recordset($13::jsonb) AS l({_LINE_RECORD})
        ),
        {event.cte("announced", 14, "created")}
        SELECT {ORDER_COLUMNS} FROM created
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
        _goods_rows(lines),
        *event.values,
    )


async def claim_editable(conn: asyncpg.Connection, order_id: str, version: int) -> int | None:
    """Compare-and-set: the order is still at `version` and editable; bumps the version."""
    return await conn.fetchval(
        """
        UPDATE orders SET version = version + 1, updated_at = now()
        WHERE id = $1 AND version = $2 AND status = ANY($3::text[])
        RETURNING version
        """,
        order_id,
        version,
        list(domain.EDITABLE),
    )


async def claim_order(conn: asyncpg.Connection, order_id: str) -> asyncpg.Record | None:
    """Lock an editable order and bump its version in one statement (the caller compares what it
    planned from); None when the order is unknown or not editable."""
    return await conn.fetchrow(
        f"""
        UPDATE orders SET version = version + 1, updated_at = now()
        WHERE id = $1 AND status = ANY($2::text[])
        RETURNING {ORDER_COLUMNS}
        """,
        order_id,
        list(domain.EDITABLE),
    )


DETAIL_COLUMNS = {"shipping": "shipping_details", "billing": "billing_details", "contact": "contact_details"}


async def set_detail(
    conn: Conn, order_id: str, kind: str, value: dict[str, Any], *, unpriced_only: bool = False
) -> asyncpg.Record | None:
    """An address or the contact of an editable order, in one compare-and-set statement.

    None when the order is unknown, not editable or (`unpriced_only`) has a chosen shipping price,
    whose quote the change may invalidate: the caller then takes the long way.
    """
    column = DETAIL_COLUMNS[kind]
    unpriced = " AND shipping_price_id IS NULL" if unpriced_only else ""
    return await conn.fetchrow(
        f"""
        UPDATE orders SET {column} = $2, version = version + 1, updated_at = now()
        WHERE id = $1 AND status = ANY($3::text[]){unpriced}
        RETURNING {ORDER_COLUMNS}
        """,
        order_id,
        value,
        list(domain.EDITABLE),
    )


async def set_basket_sync(
    conn: asyncpg.Connection,
    order_id: str,
    *,
    currency: str,
    weight_grams: int,
    basket_totals: dict[str, Any],
    order_type: str | None,
) -> None:
    await conn.execute(
        """
        UPDATE orders SET currency = $2, weight_grams = $3, basket_totals = $4, type = coalesce($5, type)
        WHERE id = $1
        """,
        order_id,
        currency,
        weight_grams,
        basket_totals,
        order_type,
    )


async def set_address(conn: asyncpg.Connection, order_id: str, kind: str, address: dict[str, Any]) -> None:
    column = {"shipping": "shipping_details", "billing": "billing_details"}[kind]
    await conn.execute(f"UPDATE orders SET {column} = $2 WHERE id = $1", order_id, address)


async def set_contact(conn: asyncpg.Connection, order_id: str, contact: dict[str, Any]) -> None:
    await conn.execute("UPDATE orders SET contact_details = $2 WHERE id = $1", order_id, contact)


async def set_shipping_choice(
    conn: asyncpg.Connection,
    order_id: str,
    *,
    method: str | None,
    preference: str | None,
    price_id: str | None,
) -> None:
    await conn.execute(
        "UPDATE orders SET shipping_method = $2, shipping_preference = $3, shipping_price_id = $4 WHERE id = $1",
        order_id,
        method,
        preference,
        price_id,
    )


async def set_shipping_choice_and_totals(
    conn: asyncpg.Connection,
    order_id: str,
    *,
    method: str | None,
    preference: str | None,
    price_id: str | None,
    totals: domain.Totals,
) -> asyncpg.Record:
    """The chosen price and the totals it leads to; returns the order. Unplaced orders only."""
    row = await conn.fetchrow(
        f"""
        UPDATE orders SET shipping_method = $2, shipping_preference = $3, shipping_price_id = $4,
            sub_total = $5, delivery_total = $6, discount_total = $7, tax_total = $8, order_total = $9
        WHERE id = $1 AND placed_at IS NULL
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
    assert row is not None, "only called with the order's row locked"
    return row


async def choose_shipping(
    conn: Conn,
    order_id: str,
    *,
    version: int,
    line: domain.ShippingLine,
    method: str,
    preference: str | None,
    price_id: str,
    totals: domain.Totals,
) -> asyncpg.Record | None:
    """The chosen price, its shipping line (replacing any) and the totals they lead to, in one
    compare-and-set statement on the version the totals were computed from (its lines cannot
    have changed meanwhile); None, and nothing written, when the order moved on or is not
    editable."""
    return await conn.fetchrow(
        f"""
        WITH claimed AS (
            UPDATE orders SET version = version + 1, updated_at = now(), shipping_method = $3,
                shipping_preference = $4, shipping_price_id = $5, sub_total = $6, delivery_total = $7,
                discount_total = $8, tax_total = $9, order_total = $10
            WHERE id = $1 AND version = $2 AND status = ANY($11::text[])
            RETURNING {ORDER_COLUMNS}
        ),
        line AS (
            INSERT INTO order_lines (id, order_id, position, sku, description, option, quantity, unit_price,
                unit_qty, line_total, tax_total, tax_rate, is_shipping, requires_shipping)
            SELECT $12, claimed.id, 0, $13, $14, $15, 1, $16, 1, $17, $18, $19, true, false FROM claimed
            ON CONFLICT (order_id) WHERE is_shipping DO UPDATE SET sku = EXCLUDED.sku,
                description = EXCLUDED.description, option = EXCLUDED.option, unit_price = EXCLUDED.unit_price,
                line_total = EXCLUDED.line_total, tax_total = EXCLUDED.tax_total, tax_rate = EXCLUDED.tax_rate
        )
        SELECT {ORDER_COLUMNS} FROM claimed
        """,
        order_id,
        version,
        method,
        preference,
        price_id,
        totals.sub_total,
        totals.delivery_total,
        totals.discount_total,
        totals.tax_total,
        totals.order_total,
        list(domain.EDITABLE),
        new_id(),
        line.sku,
        line.description,
        line.option,
        line.unit_price,
        line.line_total,
        line.tax_total,
        line.tax_rate,
    )


async def recompute_totals(conn: asyncpg.Connection, order_id: str) -> domain.Totals:
    """Totals from the lines; only ever called for an unplaced order whose row this tx holds."""
    rows = await conn.fetch(
        "SELECT line_total, tax_total, discount_total, is_shipping FROM order_lines WHERE order_id = $1", order_id
    )
    result = domain.totals(
        domain.LineAmounts(r["line_total"], r["tax_total"], r["discount_total"], r["is_shipping"]) for r in rows
    )
    await conn.execute(
        """
        UPDATE orders SET sub_total = $2, delivery_total = $3, discount_total = $4, tax_total = $5, order_total = $6
        WHERE id = $1 AND placed_at IS NULL
        """,
        order_id,
        result.sub_total,
        result.delivery_total,
        result.discount_total,
        result.tax_total,
        result.order_total,
    )
    return result


async def change_status(
    conn: asyncpg.Connection,
    order_id: str,
    *,
    expected: str,
    version: int,
    status: str,
    tracking_no: str | None = None,
    dispatched_at: datetime | None = None,
) -> asyncpg.Record | None:
    """Compare-and-set a status change; None when the order moved on meanwhile."""
    return await conn.fetchrow(
        f"""
        UPDATE orders SET status = $4, version = version + 1, updated_at = now(),
            tracking_no = coalesce($5, tracking_no),
            dispatched_at = coalesce(dispatched_at, $6)
        WHERE id = $1 AND status = $2 AND version = $3
        RETURNING {ORDER_COLUMNS}
        """,
        order_id,
        expected,
        version,
        status,
        tracking_no,
        dispatched_at,
    )


async def set_tracking_no(
    conn: asyncpg.Connection, order_id: str, version: int, tracking_no: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        UPDATE orders SET tracking_no = $3, version = version + 1, updated_at = now()
        WHERE id = $1 AND version = $2
        RETURNING {ORDER_COLUMNS}
        """,
        order_id,
        version,
        tracking_no,
    )


async def start_processing(
    conn: asyncpg.Connection,
    order_id: str,
    *,
    expected: str,
    version: int,
    attempt_id: uuid.UUID,
    notes: str | None,
    customer_reference: str | None,
    meta: Any,
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        UPDATE orders SET status = $4, version = version + 1, updated_at = now(), attempt_id = $5,
            notes = coalesce($6, notes), customer_reference = coalesce($7, customer_reference),
            meta = coalesce($8, meta)
        WHERE id = $1 AND status = $2 AND version = $3
        RETURNING {ORDER_COLUMNS}
        """,
        order_id,
        expected,
        version,
        domain.PAYMENT_PROCESSING,
        attempt_id,
        notes,
        customer_reference,
        meta,
    )


async def start_attempt(
    conn: Conn,
    order_id: str,
    *,
    expected: str,
    version: int,
    attempt_id: uuid.UUID,
    notes: str | None,
    customer_reference: str | None,
    meta: Any,
    payment_type: Any,
    success_status: str,
    payment_token: str | None,
    event: outbox.Outgoing,
) -> asyncpg.Record | None:
    """Compare-and-set the order into payment-processing, record its attempt and write `event`, in
    one statement (atomic without a transaction); None (and nothing written) when the order moved
    on since it was read."""
    return await conn.fetchrow(
        f"""
        WITH started AS (
            UPDATE orders SET status = $4, version = version + 1, updated_at = now(), attempt_id = $5,
                notes = coalesce($6, notes), customer_reference = coalesce($7, customer_reference),
                meta = coalesce($8, meta)
            WHERE id = $1 AND status = $2 AND version = $3
            RETURNING {ORDER_COLUMNS}
        ),
        attempt AS (
            INSERT INTO checkout_attempts (attempt_id, order_id, stage, payment_type_id, payment_type_name,
                payment_type_handle, payment_driver, success_status, payment_token, currency)
            SELECT $5, started.id, 'stock_requested', $9, $10, $11, $12, $13, $14, started.currency FROM started
        ),
        {event.cte("announced", 15, "started")}
        SELECT {ORDER_COLUMNS} FROM started
        """,
        order_id,
        expected,
        version,
        domain.PAYMENT_PROCESSING,
        attempt_id,
        notes,
        customer_reference,
        meta,
        payment_type.id,
        payment_type.name,
        payment_type.handle,
        payment_type.driver,
        success_status,
        payment_token,
        *event.values,
    )


async def fail_attempt_order(conn: asyncpg.Connection, order_id: str, attempt_id: uuid.UUID) -> asyncpg.Record | None:
    """payment-processing -> failed, only for the order's current attempt."""
    return await conn.fetchrow(
        f"""
        UPDATE orders SET status = $3, version = version + 1, updated_at = now()
        WHERE id = $1 AND attempt_id = $2 AND status = $4
        RETURNING {ORDER_COLUMNS}
        """,
        order_id,
        attempt_id,
        domain.FAILED,
        domain.PAYMENT_PROCESSING,
    )


def place(
    order_id: str,
    attempt_id: uuid.UUID,
    *,
    status: str,
    placed_at: datetime,
    reference: str,
    invoice_reference: str,
    order_type: str,
) -> tuple[str, tuple[Any, ...]]:
    """payment-processing -> the success status, only for the order's current attempt, waking its
    waiting request: the CTE `placed` of the event handler's closing statement (`HandlerContext.write`)."""
    return (
        """
        placed AS (
            UPDATE orders SET status = $3, version = version + 1, updated_at = now(), placed_at = $4,
                reference = $5, invoice_reference = $6, type = coalesce(type, $7)
            WHERE id = $1 AND attempt_id = $2 AND status = $8 AND placed_at IS NULL AND EXISTS (SELECT 1 FROM fresh)
            RETURNING id, pg_notify(current_schema() || '_outcome', id) AS notified
        )
        """,
        (
            order_id,
            attempt_id,
            status,
            placed_at,
            reference,
            invoice_reference,
            order_type,
            domain.PAYMENT_PROCESSING,
        ),
    )


# ---------------------------------------------------------------------------------------------
# Lines


async def get_lines(conn: Conn, order_id: str) -> list[asyncpg.Record]:
    return await get_lines_for(conn, [order_id])


async def get_lines_for(conn: Conn, order_ids: Sequence[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {LINE_COLUMNS} FROM order_lines WHERE order_id = ANY($1::text[]) ORDER BY is_shipping, position, id",
        list(order_ids),
    )


async def replace_goods_lines(conn: asyncpg.Connection, order_id: str, lines: Sequence[dict[str, Any]]) -> None:
    """The basket snapshot's lines replace the order's goods lines (the shipping line stays)."""
    await conn.execute("DELETE FROM order_lines WHERE order_id = $1 AND NOT is_shipping", order_id)
    await conn.executemany(
        """
        INSERT INTO order_lines (id, order_id, position, variant_id, product_id, sku, description, option,
            quantity, unit_price, unit_qty, line_total, tax_total, tax_rate, discount_total, requires_shipping,
            weight_grams, meta)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
        """,
        [
            (
                new_id(),
                order_id,
                position,
                line["variant_id"],
                line["product_id"],
                line["sku"],
                line["description"],
                line["option"],
                line["quantity"],
                line["unit_price"],
                line["unit_qty"],
                line["line_total"],
                line["tax_total"],
                line["tax_rate"],
                line["discount_total"],
                line["requires_shipping"],
                line["weight_grams"],
                {},
            )
            for position, line in enumerate(lines, start=1)
        ],
    )


async def put_shipping_line(
    conn: asyncpg.Connection, order_id: str, line: domain.ShippingLine | None
) -> list[domain.LineAmounts]:
    """Set (or, for None, remove) the order's one shipping line; returns the amounts of all its
    lines afterwards, for `domain.totals`. One statement."""
    if line is None:
        change = "DELETE FROM order_lines WHERE order_id = $1 AND is_shipping RETURNING 1"
        args: tuple[Any, ...] = (order_id,)
    else:
        # The partial unique index (one shipping line per order) is the arbiter: replace in place.
        change = """
            INSERT INTO order_lines (id, order_id, position, sku, description, option, quantity, unit_price,
                unit_qty, line_total, tax_total, tax_rate, is_shipping, requires_shipping)
            VALUES ($2, $1, 0, $3, $4, $5, 1, $6, 1, $7, $8, $9, true, false)
            ON CONFLICT (order_id) WHERE is_shipping DO UPDATE SET sku = EXCLUDED.sku,
                description = EXCLUDED.description, option = EXCLUDED.option, unit_price = EXCLUDED.unit_price,
                line_total = EXCLUDED.line_total, tax_total = EXCLUDED.tax_total, tax_rate = EXCLUDED.tax_rate
            RETURNING line_total, tax_total, discount_total, is_shipping
        """
        args = (
            order_id,
            new_id(),
            line.sku,
            line.description,
            line.option,
            line.unit_price,
            line.line_total,
            line.tax_total,
            line.tax_rate,
        )
    shipping = "SELECT line_total, tax_total, discount_total, is_shipping FROM changed" if line is not None else ""
    rows = await conn.fetch(
        f"""
        WITH changed AS ({change})
        SELECT line_total, tax_total, discount_total, is_shipping FROM order_lines
        WHERE order_id = $1 AND NOT is_shipping
        {"UNION ALL " + shipping if shipping else ""}
        """,
        *args,
    )
    return [domain.LineAmounts(r["line_total"], r["tax_total"], r["discount_total"], r["is_shipping"]) for r in rows]


async def replace_shipping_line(conn: asyncpg.Connection, order_id: str, line: domain.ShippingLine | None) -> None:
    """At most one shipping line (a unique index backs this): drop it, then add the new one."""
    await conn.execute("DELETE FROM order_lines WHERE order_id = $1 AND is_shipping", order_id)
    if line is None:
        return
    await conn.execute(
        """
        INSERT INTO order_lines (id, order_id, position, sku, description, option, quantity, unit_price,
            unit_qty, line_total, tax_total, tax_rate, is_shipping, requires_shipping)
        VALUES ($1, $2, 0, $3, $4, $5, 1, $6, 1, $7, $8, $9, true, false)
        """,
        new_id(),
        order_id,
        line.sku,
        line.description,
        line.option,
        line.unit_price,
        line.line_total,
        line.tax_total,
        line.tax_rate,
    )


# ---------------------------------------------------------------------------------------------
# Checkout attempts


async def insert_attempt(
    conn: asyncpg.Connection,
    *,
    attempt_id: uuid.UUID,
    order_id: str,
    payment_type_id: str,
    payment_type_name: str,
    payment_type_handle: str,
    payment_driver: str,
    success_status: str,
    payment_token: str | None,
    currency: str,
) -> None:
    await conn.execute(
        """
        INSERT INTO checkout_attempts (attempt_id, order_id, stage, payment_type_id, payment_type_name,
            payment_type_handle, payment_driver, success_status, payment_token, currency)
        VALUES ($1, $2, 'stock_requested', $3, $4, $5, $6, $7, $8, $9)
        """,
        attempt_id,
        order_id,
        payment_type_id,
        payment_type_name,
        payment_type_handle,
        payment_driver,
        success_status,
        payment_token,
        currency,
    )


async def get_attempt(conn: Conn, attempt_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {ATTEMPT_COLUMNS} FROM checkout_attempts WHERE attempt_id = $1", attempt_id)


async def lock_attempt(conn: asyncpg.Connection, attempt_id: uuid.UUID, order_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {ATTEMPT_COLUMNS} FROM checkout_attempts WHERE attempt_id = $1 AND order_id = $2 FOR UPDATE",
        attempt_id,
        order_id,
    )


async def request_charge(
    conn: asyncpg.Connection, attempt_id: uuid.UUID, *, reservation_id: str, amount: int, currency: str
) -> bool:
    """stock_requested -> charge_requested; the token is forgotten in the same transaction."""
    done = await conn.fetchval(
        """
        UPDATE checkout_attempts SET stage = 'charge_requested', reservation_id = $2, amount = $3,
            currency = $4, payment_token = NULL, updated_at = now()
        WHERE attempt_id = $1 AND stage = 'stock_requested'
        RETURNING true
        """,
        attempt_id,
        reservation_id,
        amount,
        currency,
    )
    return bool(done)


async def finish_attempt(
    conn: asyncpg.Connection,
    attempt_id: uuid.UUID,
    *,
    expected: str,
    stage: str,
    reason: str | None = None,
    errors: dict[str, list[str]] | None = None,
) -> bool:
    done = await conn.fetchval(
        """
        UPDATE checkout_attempts SET stage = $3, reason = $4, errors = $5, payment_token = NULL, updated_at = now()
        WHERE attempt_id = $1 AND stage = $2
        RETURNING true
        """,
        attempt_id,
        expected,
        stage,
        reason,
        errors,
    )
    return bool(done)


async def charge_to_request(conn: Conn, attempt_id: uuid.UUID, order_id: str) -> asyncpg.Record | None:
    """What the attempt's charge request carries, while the attempt waits for its stock: amount and
    currency are the order's (frozen while in flight), the token the attempt's. None when the
    attempt or the order moved on."""
    return await conn.fetchrow(
        """
        SELECT a.payment_token, a.payment_type_id, o.order_total, o.currency, o.contact_details, o.notes
        FROM checkout_attempts a
        JOIN orders o ON o.id = a.order_id
        WHERE a.attempt_id = $1 AND a.order_id = $2 AND a.stage = 'stock_requested'
            AND o.status = $3 AND o.attempt_id = $1
        """,
        attempt_id,
        order_id,
        domain.PAYMENT_PROCESSING,
    )


def charge_requested(
    attempt_id: uuid.UUID, order_id: str, reservation_id: str, amount: int, currency: str
) -> tuple[str, tuple[Any, ...]]:
    """stock_requested -> charge_requested (compare-and-set), as the CTE `charged` of the event
    handler's closing statement (`HandlerContext.write`); the token is forgotten here. No row when
    the attempt or the order moved on since `charge_to_request` read them."""
    return (
        """
        charged AS (
            UPDATE checkout_attempts a SET stage = 'charge_requested', reservation_id = $3, amount = $4,
                currency = $5, payment_token = NULL, updated_at = now()
            FROM fresh, orders o
            WHERE a.attempt_id = $1 AND a.order_id = $2 AND a.stage = 'stock_requested'
                AND o.id = a.order_id AND o.status = $6 AND o.attempt_id = $1
                AND o.order_total = $4 AND o.currency = $5
            RETURNING a.attempt_id
        )
        """,
        (attempt_id, order_id, reservation_id, amount, currency, domain.PAYMENT_PROCESSING),
    )


async def attempt_outcome(conn: Conn, attempt_id: uuid.UUID) -> asyncpg.Record | None:
    """The attempt's stage and errors, with its order, lines and transactions once it ended."""
    return await conn.fetchrow(
        f"""
        SELECT a.stage, a.errors, {_O_ORDER_COLUMNS}, {_LINES_JSON}, {_TRANSACTIONS_JSON}
        FROM checkout_attempts a JOIN orders o ON o.id = a.order_id
        WHERE a.attempt_id = $1
        """,
        attempt_id,
    )


async def stalled_attempts(conn: Conn, older_than_seconds: float, limit: int = 100) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT attempt_id, order_id FROM checkout_attempts
        WHERE stage = 'stock_requested' AND created_at < now() - make_interval(secs => $1)
        ORDER BY created_at LIMIT $2
        """,
        older_than_seconds,
        limit,
    )


async def notify_outcome(conn: asyncpg.Connection, order_id: str) -> None:
    """Wakes the replica whose `POST /orders/process` waits on this order (sent on commit)."""
    await conn.execute("SELECT pg_notify(current_schema() || '_outcome', $1)", order_id)


# ---------------------------------------------------------------------------------------------
# Transactions projection


_UPSERT_TRANSACTION = """
    INSERT INTO transactions (id, order_id, attempt_id, transaction_id, merchant, amount, currency, provider,
        driver, success, refund, status, card_type, last_four, notes, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
    ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, success = EXCLUDED.success,
        notes = EXCLUDED.notes, updated_at = now()
"""


def _transaction_args(tx: Any, attempt_id: uuid.UUID | None) -> tuple[Any, ...]:
    return (
        tx.id,
        tx.order_id,
        attempt_id,
        tx.transaction_id,
        tx.merchant,
        tx.amount,
        tx.currency,
        tx.provider,
        tx.driver,
        tx.success,
        tx.refund,
        tx.status,
        tx.card_type,
        tx.last_four,
        tx.notes,
        tx.created_at,
    )


async def upsert_transaction(conn: asyncpg.Connection, tx: Any, attempt_id: uuid.UUID | None) -> None:
    await conn.execute(_UPSERT_TRANSACTION, *_transaction_args(tx, attempt_id))


async def capture_and_number(
    conn: asyncpg.Connection, tx: Any, attempt_id: uuid.UUID, order_id: str, period: str
) -> asyncpg.Record | None:
    """The transaction recorded (always); the attempt charge_requested -> captured (compare-and-set,
    locks the attempt) while the order is in flight with it; then the month's next reference
    `number`, in the placing transaction (a rollback gives it back: gap-free). Returns what placing
    needs, the order's lines (JSON) included. None when the attempt or the order moved on (the
    caller looks why), and no number taken. The order's status only leaves payment-processing
    under its attempt's lock. One statement."""
    return await conn.fetchrow(
        f"""
        WITH recorded AS ({_UPSERT_TRANSACTION} RETURNING id),
        captured AS (
            UPDATE checkout_attempts a SET stage = 'captured', reason = NULL, errors = NULL, payment_token = NULL,
                updated_at = now()
            FROM orders o
            WHERE a.attempt_id = $17 AND a.order_id = $18 AND a.stage = 'charge_requested'
                AND o.id = a.order_id AND o.status = $19 AND o.attempt_id = a.attempt_id
            RETURNING a.success_status, a.payment_type_name, o.id, o.basket_id, o.status, o.order_total, o.currency,
                o.shipping_details, o.shipping_method, o.shipping_price_id
        ),
        numbered AS (
            INSERT INTO reference_counters (period, last_value) SELECT $20, 1 FROM captured
            ON CONFLICT (period) DO UPDATE SET last_value = reference_counters.last_value + 1
            RETURNING last_value
        )
        SELECT o.*, numbered.last_value AS number, {_LINES_JSON}
        FROM captured o, numbered
        """,
        *_transaction_args(tx, attempt_id),
        attempt_id,
        order_id,
        domain.PAYMENT_PROCESSING,
        period,
    )


async def get_transactions(conn: Conn, order_id: str) -> list[asyncpg.Record]:
    return await get_transactions_for(conn, [order_id])


async def get_transactions_for(conn: Conn, order_ids: Sequence[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE order_id = ANY($1::text[]) ORDER BY created_at, id",
        list(order_ids),
    )
