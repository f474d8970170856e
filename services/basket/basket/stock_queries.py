"""The SQL of stock reservations (the checkout saga's side in basket).

Every stock change locks its variants in id order, `FOR NO KEY UPDATE`: two checkouts racing
for the same variants queue instead of deadlocking, and no key changes, so the foreign-key checks
of new basket lines (`KEY SHARE`, taken in the basket's own line order) never wait on a
reservation. `variants.reserved` is what active reservations hold, changed under that lock.
"""

from __future__ import annotations

import uuid

import asyncpg

Conn = asyncpg.Connection | asyncpg.Pool

RESERVATION_COLUMNS = (
    "id, order_id, attempt_id, basket_id, status, errors, release_reason, correlation_id, expires_at, version"
)
# (variant_id, sku, quantity), one per variant.
Lines = list[tuple[str, str, int]]


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
    """An active reservation's header, then its variants locked in id order: one round trip.

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
    """The attempt's reservation, locked."""
    return await conn.fetchrow(
        f"SELECT {RESERVATION_COLUMNS} FROM stock_reservations WHERE order_id = $1 AND attempt_id = $2 FOR UPDATE",
        order_id,
        attempt_id,
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


async def hold_stock(conn: asyncpg.Connection, reservation_id: str, lines: Lines) -> None:
    """An active reservation's lines, and what they hold added to their variants (which the caller
    locked with `insert_reservation_locking_stock`)."""
    await conn.execute(
        """
        WITH held AS (
            INSERT INTO stock_reservation_lines (reservation_id, variant_id, sku, quantity)
            SELECT $1, variant_id, sku, quantity
            FROM unnest($2::text[], $3::text[], $4::int[]) AS t(variant_id, sku, quantity)
            RETURNING variant_id, quantity
        )
        UPDATE variants v SET reserved = v.reserved + held.quantity FROM held WHERE v.id = held.variant_id
        """,
        reservation_id,
        *_columns(lines),
    )


async def insert_reservation_lines(conn: asyncpg.Connection, reservation_id: str, lines: Lines) -> None:
    """Lines of a reservation that holds nothing (a sale without an active reservation)."""
    await conn.execute(
        """
        INSERT INTO stock_reservation_lines (reservation_id, variant_id, sku, quantity)
        SELECT $1, variant_id, sku, quantity
        FROM unnest($2::text[], $3::text[], $4::int[]) AS t(variant_id, sku, quantity)
        """,
        reservation_id,
        *_columns(lines),
    )


async def commit_and_sell(
    conn: asyncpg.Connection, reservation_id: str, was_active: bool, lines: Lines, *, basket_id: str, order_id: str
) -> None:
    """The (locked) reservation committed, its lines sold (inventory down and, if it was active,
    what it held given back; variants locked in id order), the basket marked used."""
    await conn.execute(
        """
        WITH committed AS (
            UPDATE stock_reservations SET status = 'committed', committed_at = now(), updated_at = now(),
                version = version + 1
            WHERE id = $1
        ),
        sold AS (
            SELECT t.variant_id, t.quantity FROM unnest($3::text[], $4::int[]) AS t(variant_id, quantity)
        ),
        locked AS (
            SELECT v.id FROM variants v JOIN sold ON sold.variant_id = v.id ORDER BY v.id FOR NO KEY UPDATE OF v
        ),
        stock AS (
            UPDATE variants v SET inventory = v.inventory - sold.quantity,
                reserved = v.reserved - CASE WHEN $2 THEN sold.quantity ELSE 0 END,
                updated_at = now(), version = v.version + 1
            FROM sold JOIN locked ON locked.id = sold.variant_id
            WHERE v.id = sold.variant_id
        )
        UPDATE baskets SET order_id = $6, used_at = now(), updated_at = now(), version = version + 1
        WHERE id = $5 AND order_id IS NULL
        """,
        reservation_id,
        was_active,
        [line[0] for line in lines],
        [line[2] for line in lines],
        basket_id,
        order_id,
    )
    await _give_back_discount_uses(conn, reservation_id, committed=True, was_active=was_active)


async def set_refused(conn: asyncpg.Connection, reservation_id: str, errors: dict[str, list[str]]) -> None:
    await conn.execute(
        "UPDATE stock_reservations SET status = 'refused', errors = $2, updated_at = now(), version = version + 1 "
        "WHERE id = $1",
        reservation_id,
        errors,
    )


async def release_reservation(conn: asyncpg.Connection, reservation_id: str, reason: str) -> None:
    """The (locked, active) reservation released, what it held given back to its variants (locked
    in id order); one statement."""
    await conn.execute(
        """
        WITH released AS (
            UPDATE stock_reservations SET status = 'released', release_reason = $2, released_at = now(),
                updated_at = now(), version = version + 1
            WHERE id = $1
            RETURNING id
        ),
        held AS (
            SELECT l.variant_id, l.quantity
            FROM stock_reservation_lines l JOIN released ON released.id = l.reservation_id
        ),
        locked AS (
            SELECT v.id FROM variants v JOIN held ON held.variant_id = v.id ORDER BY v.id FOR NO KEY UPDATE OF v
        )
        UPDATE variants v SET reserved = v.reserved - held.quantity
        FROM held JOIN locked ON locked.id = held.variant_id
        WHERE v.id = held.variant_id
        """,
        reservation_id,
        reason,
    )
    await _give_back_discount_uses(conn, reservation_id, committed=False)


# ---------------------------------------------------------------------------------------------
# Discount uses: reserved with the stock, after it (variants first, then discounts, each in id
# order, in every transaction that takes both), under the discounts' row locks.

USE_COLUMNS = (
    "id, name, coupon, status, priority, stop_rules, start_at, end_at, usage_limit, usage_limit_per_email, currency, "
    "min_basket, product_ids, variant_ids, percentage_bp, fixed_amount, free_shipping, uses, reserved"
)


async def lock_discounts(conn: asyncpg.Connection, discount_ids: list[str]) -> dict[str, asyncpg.Record]:
    """The discounts, locked in id order (`FOR NO KEY UPDATE`: only their counters change)."""
    rows = await conn.fetch(
        f"SELECT {USE_COLUMNS} FROM discounts WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE",
        discount_ids,
    )
    return {row["id"]: row for row in rows}


async def uses_by_email(conn: asyncpg.Connection, discount_ids: list[str], email_key: str) -> dict[str, int]:
    """How many checkouts with this email hold or have used each discount (placed orders and
    checkouts in flight), read under the discounts' locks."""
    rows = await conn.fetch(
        """
        SELECT u.discount_id, count(*) AS uses
        FROM discount_uses u JOIN stock_reservations r ON r.id = u.reservation_id
        WHERE u.discount_id = ANY($1::text[]) AND u.email_key = $2 AND r.status IN ('active', 'committed')
        GROUP BY u.discount_id
        """,
        discount_ids,
        email_key,
    )
    return {row["discount_id"]: row["uses"] for row in rows}


async def hold_discount_uses(
    conn: asyncpg.Connection, reservation_id: str, order_id: str, email_key: str | None, uses: list[tuple[str, int]]
) -> None:
    """An active reservation's discount uses (`uses`: discount id and amount, one per discount,
    locked by `lock_discounts`), each held on its discount."""
    await conn.execute(
        """
        WITH used AS (
            INSERT INTO discount_uses (reservation_id, discount_id, order_id, email_key, amount)
            SELECT $1, discount_id, $2, $3, amount FROM unnest($4::text[], $5::bigint[]) AS t(discount_id, amount)
            RETURNING discount_id
        )
        UPDATE discounts d SET reserved = d.reserved + 1 FROM used WHERE d.id = used.discount_id
        """,
        reservation_id,
        order_id,
        email_key,
        [discount_id for discount_id, _ in uses],
        [amount for _, amount in uses],
    )


async def _give_back_discount_uses(
    conn: asyncpg.Connection, reservation_id: str, *, committed: bool, was_active: bool = True
) -> None:
    """The uses a reservation held, once it is released (given back) or committed (counted; given
    back too if it was still active); discounts locked in id order."""
    await conn.execute(
        """
        WITH held AS (
            SELECT discount_id FROM discount_uses WHERE reservation_id = $1
        ),
        locked AS (
            SELECT d.id FROM discounts d JOIN held ON held.discount_id = d.id ORDER BY d.id FOR NO KEY UPDATE OF d
        )
        UPDATE discounts d SET reserved = d.reserved - CASE WHEN $3 THEN 1 ELSE 0 END,
            uses = d.uses + CASE WHEN $2 THEN 1 ELSE 0 END
        FROM locked WHERE d.id = locked.id
        """,
        reservation_id,
        committed,
        was_active,
    )


async def expired_reservations(conn: Conn, limit: int) -> list[asyncpg.Record]:
    """Active reservations past their time (`id`, `correlation_id`), oldest first; not locked."""
    return await conn.fetch(
        "SELECT id, correlation_id FROM stock_reservations WHERE status = 'active' AND expires_at <= now() "
        "ORDER BY expires_at LIMIT $1",
        limit,
    )


async def lock_expired_reservation(conn: asyncpg.Connection, reservation_id: str) -> asyncpg.Record | None:
    """The reservation, locked, if it is still active and expired and nobody else holds it (another
    sweeper, or the order's own event, which then decides)."""
    return await conn.fetchrow(
        f"SELECT {RESERVATION_COLUMNS} FROM stock_reservations "
        "WHERE id = $1 AND status = 'active' AND expires_at <= now() FOR UPDATE SKIP LOCKED",
        reservation_id,
    )


def _columns(lines: Lines) -> tuple[list[str], list[str], list[int]]:
    return [line[0] for line in lines], [line[1] for line in lines], [line[2] for line in lines]
