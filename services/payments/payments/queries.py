"""All SQL of the payments service (explicit columns; search_path is the payments schema)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

TYPE_COLUMNS = "id, name, handle, driver, success_status, enabled"

TRANSACTION_COLUMNS = (
    "id, order_id, attempt_id, kind, amount, currency, payment_type_id, provider, driver, transaction_id, "
    "merchant, status, success, refund, card_type, last_four, notes, message, parent_id, refunded_total, version, "
    "created_at"
)

SEED_TYPES = (
    # (name, handle, driver, success_status)
    ("Card", "card", "sandbox", "payment-received"),
    ("Offline", "offline", "offline", "offline-payment"),
)


async def insert_type_if_missing(
    conn: asyncpg.Connection, type_id: str, name: str, handle: str, driver: str, success_status: str
) -> bool:
    inserted = await conn.fetchval(
        "INSERT INTO payment_types (id, name, handle, driver, success_status) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (handle) DO NOTHING RETURNING true",
        type_id,
        name,
        handle,
        driver,
        success_status,
    )
    return bool(inserted)


async def enabled_types(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {TYPE_COLUMNS} FROM payment_types WHERE enabled ORDER BY name, id")


async def type_by_id(conn: asyncpg.Connection, type_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {TYPE_COLUMNS} FROM payment_types WHERE id = $1", type_id)


async def type_by_handle(conn: asyncpg.Connection, handle: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {TYPE_COLUMNS} FROM payment_types WHERE handle = $1", handle)


async def type_by_key(conn: asyncpg.Connection, key: str) -> asyncpg.Record | None:
    """By id or, failing that, by handle: one round trip."""
    return await conn.fetchrow(
        f"SELECT {TYPE_COLUMNS} FROM payment_types WHERE id = $1 OR handle = $1 ORDER BY id = $1 DESC LIMIT 1", key
    )


_TYPE_NAMES = tuple(column.strip() for column in TYPE_COLUMNS.split(","))
_CHARGES_AND_TYPE = f"""
    SELECT {", ".join(f"pt.{name} AS type_{name}" for name in _TYPE_NAMES)},
        {", ".join(f"t.{column.strip()}" for column in TRANSACTION_COLUMNS.split(","))}
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (
        SELECT {TYPE_COLUMNS} FROM payment_types WHERE id = $3 OR handle = $3 ORDER BY id = $3 DESC LIMIT 1
    ) pt ON true
    LEFT JOIN transactions t
        ON t.kind = 'charge' AND (t.attempt_id = $1 OR (t.order_id = $2 AND t.status = 'captured'))
"""


async def charges_and_type(
    conn: asyncpg.Connection, attempt_id: uuid.UUID, order_id: str, type_key: str | None
) -> tuple[list[asyncpg.Record], dict[str, Any] | None]:
    """The attempt's charge, if any, and the order's live capture, if any; and the payment type
    by `type_key` (as `type_by_key`; None finds none): one round trip."""
    rows = await conn.fetch(_CHARGES_AND_TYPE, attempt_id, order_id, type_key)
    first = rows[0]
    ptype = {name: first[f"type_{name}"] for name in _TYPE_NAMES} if first["type_id"] is not None else None
    return [row for row in rows if row["id"] is not None], ptype


async def record_intent(
    conn: asyncpg.Connection, attempt_id: uuid.UUID, order_id: str, amount: int, currency: str, type_id: str
) -> asyncpg.Record:
    """The intent of an attempt; the first one recorded wins and is returned on every call."""
    row = await conn.fetchrow(
        "INSERT INTO charge_intents (attempt_id, order_id, amount, currency, payment_type_id) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (attempt_id) DO NOTHING "
        "RETURNING attempt_id, order_id, amount, currency, payment_type_id",
        attempt_id,
        order_id,
        amount,
        currency,
        type_id,
    )
    if row is None:
        row = await conn.fetchrow(
            "SELECT attempt_id, order_id, amount, currency, payment_type_id FROM charge_intents WHERE attempt_id = $1",
            attempt_id,
        )
    assert row is not None
    return row


async def intent_of(conn: asyncpg.Connection, attempt_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT attempt_id, order_id, amount, currency, payment_type_id FROM charge_intents WHERE attempt_id = $1",
        attempt_id,
    )


async def charge_for_attempt(conn: asyncpg.Connection, attempt_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE attempt_id = $1 AND kind = 'charge'", attempt_id
    )


async def live_capture_for_order(conn: asyncpg.Connection, order_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {TRANSACTION_COLUMNS} FROM transactions "
        "WHERE order_id = $1 AND kind = 'charge' AND status = 'captured'",
        order_id,
    )


async def insert_transaction(conn: asyncpg.Connection, values: dict[str, Any]) -> asyncpg.Record:
    columns = list(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return await conn.fetchrow(
        f"INSERT INTO transactions ({', '.join(columns)}) VALUES ({placeholders}) RETURNING {TRANSACTION_COLUMNS}",
        *values.values(),
    )


async def insert_transaction_if_new(conn: asyncpg.Connection, values: dict[str, Any]) -> asyncpg.Record | None:
    """`insert_transaction`, or None when a unique index refuses it (one charge per attempt, one
    live capture per order): the caller looks which. No savepoint needed."""
    columns = list(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return await conn.fetchrow(
        f"INSERT INTO transactions ({', '.join(columns)}) VALUES ({placeholders}) "
        f"ON CONFLICT DO NOTHING RETURNING {TRANSACTION_COLUMNS}",
        *values.values(),
    )


def record_transaction(values: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """`insert_transaction_if_new` as the CTE `recorded` of the event handler's closing statement
    (`HandlerContext.write`): no row when a unique index refuses it."""
    columns = list(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return (
        f"recorded AS (INSERT INTO transactions ({', '.join(columns)}) SELECT {placeholders} FROM fresh "
        "ON CONFLICT DO NOTHING RETURNING id)",
        tuple(values.values()),
    )


async def transaction(conn: asyncpg.Connection, transaction_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE id = $1{suffix}", transaction_id)


async def add_refund(
    conn: asyncpg.Connection, charge_id: str, version: int, amount: int, status: str
) -> asyncpg.Record | None:
    """Compare-and-set: None when the charge changed since it was read."""
    return await conn.fetchrow(
        "UPDATE transactions SET refunded_total = refunded_total + $3, status = $4, version = version + 1, "
        "updated_at = now() WHERE id = $1 AND version = $2 AND kind = 'charge' AND status = 'captured' "
        f"RETURNING {TRANSACTION_COLUMNS}",
        charge_id,
        version,
        amount,
        status,
    )


async def mark_voided(conn: asyncpg.Connection, charge_id: str, version: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "UPDATE transactions SET status = 'voided', version = version + 1, updated_at = now() "
        "WHERE id = $1 AND version = $2 AND kind = 'charge' AND status = 'captured' AND refunded_total = 0 "
        f"RETURNING {TRANSACTION_COLUMNS}",
        charge_id,
        version,
    )
