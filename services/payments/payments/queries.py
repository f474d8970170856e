"""All SQL of the payments service (explicit columns; search_path is the payments schema)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

TYPE_COLUMNS = "id, name, handle, driver, success_status, enabled, offered, paid_on_success, version"

TRANSACTION_COLUMNS = (
    "id, order_id, attempt_id, kind, amount, currency, payment_type_id, provider, driver, transaction_id, "
    "merchant, status, success, refund, card_type, last_four, notes, message, parent_id, refunded_total, version, "
    "created_at"
)

SEED_TYPES = (
    # (name, handle, driver, success_status, paid_on_success): the demo's, all enabled and offered
    ("Card", "card", "sandbox", "payment-received", True),
    ("Offline", "offline", "offline", "offline-payment", False),
)


async def insert_type_if_missing(
    conn: asyncpg.Connection,
    type_id: str,
    name: str,
    handle: str,
    driver: str,
    success_status: str,
    paid_on_success: bool,
) -> bool:
    """A demo type, enabled and offered, unless its handle exists (then nothing changes)."""
    inserted = await conn.fetchval(
        "INSERT INTO payment_types (id, name, handle, driver, success_status, paid_on_success, enabled, offered) "
        "VALUES ($1, $2, $3, $4, $5, $6, true, true) ON CONFLICT (handle) DO NOTHING RETURNING true",
        type_id,
        name,
        handle,
        driver,
        success_status,
        paid_on_success,
    )
    return bool(inserted)


async def offer_as_installed(conn: asyncpg.Connection, handles: list[str]) -> None:
    """Enable and offer these types where nobody has changed their policy since the migrations
    installed them (version 1); a type an admin changed, or one done so before, stays as it is."""
    await conn.execute(
        "UPDATE payment_types SET enabled = true, offered = true, version = version + 1, updated_at = now() "
        "WHERE handle = ANY($1::text[]) AND version = 1 AND NOT (enabled AND offered)",
        handles,
    )


async def offered_types(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """What the storefront may choose: enabled and offered."""
    return await conn.fetch(f"SELECT {TYPE_COLUMNS} FROM payment_types WHERE enabled AND offered ORDER BY name, id")


async def all_types(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {TYPE_COLUMNS} FROM payment_types ORDER BY name, id")


async def set_type_policy(
    conn: asyncpg.Connection, type_id: str, version: int, enabled: bool, offered: bool
) -> asyncpg.Record | None:
    """Compare-and-set: the new policy only if the type is still at `version`; else None."""
    return await conn.fetchrow(
        "UPDATE payment_types SET enabled = $3, offered = $4, version = version + 1, updated_at = now() "
        f"WHERE id = $1 AND version = $2 RETURNING {TYPE_COLUMNS}",
        type_id,
        version,
        enabled,
        offered,
    )


async def type_by_id(conn: asyncpg.Connection, type_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {TYPE_COLUMNS} FROM payment_types WHERE id = $1", type_id)


async def type_by_key(conn: asyncpg.Connection, key: str) -> asyncpg.Record | None:
    """By id or, failing that, by handle: one round trip."""
    return await conn.fetchrow(
        f"SELECT {TYPE_COLUMNS} FROM payment_types WHERE id = $1 OR handle = $1 ORDER BY id = $1 DESC LIMIT 1", key
    )


async def lock_order_charges(conn: asyncpg.Connection, order_id: str) -> None:
    """Serialise the charging of one order until the transaction ends. Payments keeps no row per
    order to lock, so the lock is on the order's id."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('payments.order:' || $1, 0))", order_id)


async def charges_of(conn: asyncpg.Connection, attempt_id: uuid.UUID, order_id: str) -> list[asyncpg.Record]:
    """The attempt's charge, if it has one, and the order's live capture, if it has one."""
    return await conn.fetch(
        f"SELECT {TRANSACTION_COLUMNS} FROM transactions "
        "WHERE kind = 'charge' AND (attempt_id = $1 OR (order_id = $2 AND status = 'captured'))",
        attempt_id,
        order_id,
    )


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


async def mark_intent_settled(conn: asyncpg.Connection, attempt_id: uuid.UUID) -> None:
    """In the unit of work that records the attempt's transaction."""
    await conn.execute("UPDATE charge_intents SET settled_at = now() WHERE attempt_id = $1", attempt_id)


async def unsettled_intents(
    conn: asyncpg.Pool | asyncpg.Connection, older_than: float, limit: int
) -> list[asyncpg.Record]:
    """Intents recorded more than `older_than` seconds ago whose result never was, oldest first."""
    return await conn.fetch(
        "SELECT attempt_id, order_id, amount, currency, payment_type_id FROM charge_intents "
        "WHERE settled_at IS NULL AND created_at < now() - make_interval(secs => $1) ORDER BY created_at LIMIT $2",
        older_than,
        limit,
    )


async def insert_transaction(conn: asyncpg.Connection, values: dict[str, Any]) -> asyncpg.Record:
    columns = list(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return await conn.fetchrow(
        f"INSERT INTO transactions ({', '.join(columns)}) VALUES ({placeholders}) RETURNING {TRANSACTION_COLUMNS}",
        *values.values(),
    )


async def transaction(conn: asyncpg.Connection, transaction_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE id = $1{suffix}", transaction_id)


# Refunds and voids change a charge the caller holds locked (`transaction(..., lock=True)`).


async def add_refund(conn: asyncpg.Connection, charge_id: str, amount: int, status: str) -> asyncpg.Record:
    return await conn.fetchrow(
        "UPDATE transactions SET refunded_total = refunded_total + $2, status = $3, version = version + 1, "
        f"updated_at = now() WHERE id = $1 RETURNING {TRANSACTION_COLUMNS}",
        charge_id,
        amount,
        status,
    )


async def mark_voided(conn: asyncpg.Connection, charge_id: str) -> asyncpg.Record:
    return await conn.fetchrow(
        "UPDATE transactions SET status = 'voided', version = version + 1, updated_at = now() "
        f"WHERE id = $1 RETURNING {TRANSACTION_COLUMNS}",
        charge_id,
    )
