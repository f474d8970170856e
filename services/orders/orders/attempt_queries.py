"""The SQL of checkout attempts and of the transactions projection (payments' events).

An attempt's stage only changes under its order's row lock (`lock_checkout`, or the order's
`lock_order` when the attempt is created), so the checks made under that lock hold until commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from orders.queries import LINES_JSON, O_ORDER_COLUMNS, Conn
from shared.contracts import PaymentTypeView, TransactionView

IN_FLIGHT_STAGES = ("stock_requested", "charge_requested")

TRANSACTION_COLUMNS = """
    id, order_id, attempt_id, transaction_id, merchant, amount, currency, provider, driver,
    success, refund, status, card_type, last_four, notes, created_at
"""


async def insert_attempt(
    conn: asyncpg.Connection,
    attempt_id: uuid.UUID,
    order_id: str,
    *,
    payment_type: PaymentTypeView,
    success_status: str,
    payment_token: str | None,
    currency: str,
) -> None:
    """A new attempt, waiting for its stock (the unique index refuses a second one in flight)."""
    await conn.execute(
        """
        INSERT INTO checkout_attempts (attempt_id, order_id, stage, payment_type_id, payment_type_name,
            payment_type_handle, payment_driver, success_status, payment_token, currency)
        VALUES ($1, $2, 'stock_requested', $3, $4, $5, $6, $7, $8, $9)
        """,
        attempt_id,
        order_id,
        payment_type.id,
        payment_type.name,
        payment_type.handle,
        payment_type.driver,
        success_status,
        payment_token,
        currency,
    )


async def lock_checkout(conn: asyncpg.Connection, order_id: str, attempt_id: uuid.UUID) -> asyncpg.Record | None:
    """The order, locked, with what the saga needs of one of its attempts: `stage`,
    `payment_token`, `payment_type_id`, `payment_type_name`, `success_status`, and the seconds
    since the attempt started (`attempt_seconds`) and since its stage began (`stage_seconds`,
    by the database's clock, the one that stamped them). The order's own `attempt_id` is its
    latest attempt. None when the order has no such attempt.

    The attempt's row is locked too, not because anyone changes it without the order's lock, but
    because a row that is locked is returned as it is once the wait for the lock ends; a joined
    row that is not would be returned as the statement first saw it, before the step it waited
    for moved the attempt on."""
    return await conn.fetchrow(
        f"""
        SELECT {O_ORDER_COLUMNS}, a.stage, a.payment_token, a.payment_type_id, a.payment_type_name, a.success_status,
            extract(epoch FROM clock_timestamp() - a.created_at)::float8 AS attempt_seconds,
            extract(epoch FROM clock_timestamp() - a.updated_at)::float8 AS stage_seconds
        FROM orders o JOIN checkout_attempts a ON a.order_id = o.id AND a.attempt_id = $2
        WHERE o.id = $1
        FOR UPDATE OF o, a
        """,
        order_id,
        attempt_id,
    )


async def request_charge(
    conn: asyncpg.Connection, attempt_id: uuid.UUID, *, reservation_id: str, amount: int, currency: str
) -> None:
    """stock_requested -> charge_requested; the token leaves the table (it travels in the event)."""
    await conn.execute(
        """
        UPDATE checkout_attempts SET stage = 'charge_requested', reservation_id = $2, amount = $3,
            currency = $4, payment_token = NULL, updated_at = now()
        WHERE attempt_id = $1
        """,
        attempt_id,
        reservation_id,
        amount,
        currency,
    )


async def finish_attempt(
    conn: asyncpg.Connection,
    attempt_id: uuid.UUID,
    stage: str,
    *,
    reason: str | None = None,
    errors: dict[str, list[str]] | None = None,
) -> None:
    """The attempt's last stage (captured, declined, refused, timed_out); no token is kept."""
    await conn.execute(
        """
        UPDATE checkout_attempts SET stage = $2, reason = $3, errors = $4, payment_token = NULL, updated_at = now()
        WHERE attempt_id = $1
        """,
        attempt_id,
        stage,
        reason,
        errors,
    )


async def attempt_outcome(conn: Conn, attempt_id: uuid.UUID) -> asyncpg.Record | None:
    """The attempt's stage and errors, with its order's columns, `lines` and `transactions`."""
    return await conn.fetchrow(
        f"""
        SELECT a.stage, a.errors, {O_ORDER_COLUMNS}, {LINES_JSON},
            (SELECT coalesce(json_agg(t ORDER BY t.created_at, t.id), '[]')
             FROM (SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE order_id = o.id) t) AS transactions
        FROM checkout_attempts a JOIN orders o ON o.id = a.order_id
        WHERE a.attempt_id = $1
        """,
        attempt_id,
    )


def transactions_of(outcome: asyncpg.Record) -> list[dict[str, Any]]:
    """The transactions of an `attempt_outcome`, timestamps as datetimes again."""
    return [tx | {"created_at": datetime.fromisoformat(tx["created_at"])} for tx in outcome["transactions"]]


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


# ---------------------------------------------------------------------------------------------
# Transactions projection


async def upsert_transaction(conn: asyncpg.Connection, tx: TransactionView, attempt_id: uuid.UUID | None) -> None:
    """Payments' transaction as it is now (a later event updates its status)."""
    await conn.execute(
        """
        INSERT INTO transactions (id, order_id, attempt_id, transaction_id, merchant, amount, currency, provider,
            driver, success, refund, status, card_type, last_four, notes, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
        ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, success = EXCLUDED.success,
            notes = EXCLUDED.notes, updated_at = now()
        """,
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


async def get_transactions_for(conn: Conn, order_ids: Sequence[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE order_id = ANY($1::text[]) ORDER BY created_at, id",
        list(order_ids),
    )
