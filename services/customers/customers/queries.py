"""All SQL of the customers service (explicit columns; search_path is the customers schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

CUSTOMER_COLUMNS = (
    "id, email, firstname, lastname, company_name, vat_no, contact_number, alt_contact_number, password_hash, "
    "password_changed_at, created_at, updated_at"
)
ADDRESS_COLUMNS = (
    "id, customer_id, salutation, firstname, lastname, company_name, email, phone, address, address_two, "
    "address_three, city, state, postal_code, country, shipping, billing, is_default, delivery_instructions, meta, "
    "last_used_at, created_at, updated_at"
)


async def now(conn: asyncpg.Connection) -> datetime:
    """The database's clock (the transaction's start): the one every replica shares."""
    return await conn.fetchval("SELECT now()")


# ---------------------------------------------------------------------------------------------
# Customers


async def insert_customer(conn: asyncpg.Connection, values: dict[str, Any]) -> asyncpg.Record:
    """Raises UniqueViolationError when the email is taken, whatever its case."""
    return await conn.fetchrow(
        f"""
        INSERT INTO customers (id, email, firstname, lastname, company_name, vat_no, contact_number,
                               alt_contact_number, password_hash)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        RETURNING {CUSTOMER_COLUMNS}
        """,
        values["id"],
        values["email"],
        values["firstname"],
        values["lastname"],
        values["company_name"],
        values["vat_no"],
        values["contact_number"],
        values["alt_contact_number"],
        values["password_hash"],
    )


async def email_taken(conn: asyncpg.Connection | asyncpg.Pool, email: str) -> bool:
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM customers WHERE lower(email) = lower($1))", email)


async def customer(conn: asyncpg.Connection | asyncpg.Pool, customer_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1", customer_id)


async def lock_customer(conn: asyncpg.Connection, customer_id: str) -> asyncpg.Record | None:
    """The account, locked: its password and its address book change one request at a time."""
    return await conn.fetchrow(f"SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1 FOR UPDATE", customer_id)


async def customer_by_email(conn: asyncpg.Connection | asyncpg.Pool, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {CUSTOMER_COLUMNS} FROM customers WHERE lower(email) = lower($1)", email)


async def change_password(conn: asyncpg.Connection, customer_id: str, password_hash: str) -> datetime:
    """A new password's hash; when it changed."""
    return await conn.fetchval(
        "UPDATE customers SET password_hash = $2, password_changed_at = now(), updated_at = now() "
        "WHERE id = $1 RETURNING password_changed_at",
        customer_id,
        password_hash,
    )


async def rehash_password(conn: asyncpg.Connection, customer_id: str, old_hash: str, new_hash: str) -> None:
    """The same password hashed with today's parameters, unless it changed meanwhile."""
    await conn.execute(
        "UPDATE customers SET password_hash = $3, updated_at = now() WHERE id = $1 AND password_hash = $2",
        customer_id,
        old_hash,
        new_hash,
    )


# ---------------------------------------------------------------------------------------------
# Sessions and refresh tokens


async def open_session(conn: asyncpg.Connection, session_id: str, customer_id: str) -> None:
    await conn.execute("INSERT INTO sessions (id, customer_id) VALUES ($1, $2)", session_id, customer_id)


async def insert_refresh_token(conn: asyncpg.Connection, token_hash: bytes, session_id: str, ttl: int) -> None:
    await conn.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) "
        "VALUES ($1, $2, now() + make_interval(secs => $3))",
        token_hash,
        session_id,
        ttl,
    )


async def lock_refresh_token(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    """A refresh token with its session, both locked (a refresh waits for a sign-out of the same
    session, and the other way round), and the database's clock."""
    return await conn.fetchrow(
        """
        SELECT t.session_id, t.expires_at, t.used_at, s.customer_id, s.revoked_at, now() AS now
        FROM refresh_tokens t
        JOIN sessions s ON s.id = t.session_id
        WHERE t.token_hash = $1
        FOR UPDATE OF t, s
        """,
        token_hash,
    )


async def spend_refresh_token(conn: asyncpg.Connection, token_hash: bytes) -> None:
    await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", token_hash)


async def revoke_session(conn: asyncpg.Connection, session_id: str) -> None:
    await conn.execute("UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", session_id)


async def revoke_session_of_token(conn: asyncpg.Connection, token_hash: bytes) -> None:
    await conn.execute(
        "UPDATE sessions SET revoked_at = now() "
        "WHERE id = (SELECT session_id FROM refresh_tokens WHERE token_hash = $1) AND revoked_at IS NULL",
        token_hash,
    )


async def revoke_sessions_of(conn: asyncpg.Connection, customer_id: str) -> None:
    await conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE customer_id = $1 AND revoked_at IS NULL", customer_id
    )


# ---------------------------------------------------------------------------------------------
# The sign-in throttle


async def lock_failures(conn: asyncpg.Connection, keys: list[bytes]) -> list[asyncpg.Record]:
    """The failure counts of `keys` (created at zero when new), locked in key order, so that two
    attempts sharing a key take turns and two sharing two keys cannot deadlock."""
    ordered = sorted(keys)
    await conn.execute(
        "INSERT INTO signin_failures (key_hash) SELECT unnest($1::bytea[]) ON CONFLICT (key_hash) DO NOTHING",
        ordered,
    )
    return await conn.fetch(
        "SELECT key_hash, failures, last_failure_at FROM signin_failures "
        "WHERE key_hash = ANY($1::bytea[]) ORDER BY key_hash FOR UPDATE",
        ordered,
    )


async def record_failure(conn: asyncpg.Connection, key: bytes, failures: int) -> None:
    # An upsert: the purge may have taken a row at zero between its creation and its lock.
    await conn.execute(
        "INSERT INTO signin_failures (key_hash, failures, last_failure_at) VALUES ($1, $2, now()) "
        "ON CONFLICT (key_hash) DO UPDATE SET failures = excluded.failures, last_failure_at = excluded.last_failure_at",
        key,
        failures,
    )


async def forget_failures(conn: asyncpg.Connection, key: bytes) -> None:
    await conn.execute("DELETE FROM signin_failures WHERE key_hash = $1", key)


async def take_back_failure(conn: asyncpg.Connection, key: bytes) -> None:
    """The attempt counted up front turned out a success: it is not a failure after all."""
    await conn.execute("UPDATE signin_failures SET failures = greatest(failures - 1, 0) WHERE key_hash = $1", key)


# ---------------------------------------------------------------------------------------------
# Addresses


async def addresses(conn: asyncpg.Connection | asyncpg.Pool, customer_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {ADDRESS_COLUMNS} FROM addresses WHERE customer_id = $1 ORDER BY created_at, id", customer_id
    )


async def address_of(
    conn: asyncpg.Connection | asyncpg.Pool, address_id: str, customer_id: str
) -> asyncpg.Record | None:
    """One of the customer's own addresses; another customer's is None, as an unknown one."""
    return await conn.fetchrow(
        f"SELECT {ADDRESS_COLUMNS} FROM addresses WHERE id = $1 AND customer_id = $2", address_id, customer_id
    )


async def lock_address(conn: asyncpg.Connection, address_id: str, customer_id: str) -> asyncpg.Record | None:
    """One of the customer's own addresses; another customer's is None, as an unknown one."""
    return await conn.fetchrow(
        f"SELECT {ADDRESS_COLUMNS} FROM addresses WHERE id = $1 AND customer_id = $2 FOR UPDATE",
        address_id,
        customer_id,
    )


async def count_addresses(conn: asyncpg.Connection, customer_id: str) -> int:
    return await conn.fetchval("SELECT count(*) FROM addresses WHERE customer_id = $1", customer_id)


async def insert_address(conn: asyncpg.Connection, values: dict[str, Any]) -> asyncpg.Record:
    columns = list(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return await conn.fetchrow(
        f"INSERT INTO addresses ({', '.join(columns)}) VALUES ({placeholders}) RETURNING {ADDRESS_COLUMNS}",
        *values.values(),
    )


async def update_address(
    conn: asyncpg.Connection, address_id: str, customer_id: str, changes: dict[str, Any]
) -> asyncpg.Record:
    assignments = [f"{name} = ${i}" for i, name in enumerate(changes, start=3)]
    assignments.append("updated_at = now()")
    return await conn.fetchrow(
        f"UPDATE addresses SET {', '.join(assignments)} WHERE id = $1 AND customer_id = $2 RETURNING {ADDRESS_COLUMNS}",
        address_id,
        customer_id,
        *changes.values(),
    )


async def clear_defaults(conn: asyncpg.Connection, customer_id: str, address_ids: list[str]) -> None:
    if address_ids:
        await conn.execute(
            "UPDATE addresses SET is_default = false, updated_at = now() WHERE customer_id = $1 AND id = ANY($2)",
            customer_id,
            address_ids,
        )


async def delete_address(conn: asyncpg.Connection, address_id: str, customer_id: str) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM addresses WHERE id = $1 AND customer_id = $2 RETURNING true", address_id, customer_id
    )
    return bool(deleted)


# ---------------------------------------------------------------------------------------------
# Purging what no longer counts


async def purge_expired_tokens(conn: asyncpg.Connection, limit: int) -> int:
    result = await conn.execute(
        "DELETE FROM refresh_tokens WHERE expires_at < now() AND token_hash = ANY (ARRAY("
        "SELECT token_hash FROM refresh_tokens WHERE expires_at < now() LIMIT $1))",
        limit,
    )
    return int(result.split()[-1])


# The conditions of the purges below stand in the DELETE itself as well as in its batch: a row a
# sign-in changed meanwhile is checked again once its lock is free, and kept if it now counts.
_ENDED = "(s.revoked_at IS NOT NULL OR NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id))"
_FORGOTTEN = "(failures = 0 OR last_failure_at IS NULL OR last_failure_at < now() - make_interval(secs => $1))"


async def purge_ended_sessions(conn: asyncpg.Connection, limit: int) -> int:
    """Revoked sessions, and those whose every token has expired and gone (a session and its
    first token are written in one transaction, so a new session is never without one)."""
    result = await conn.execute(
        f"DELETE FROM sessions s WHERE {_ENDED} AND s.id = ANY (ARRAY("
        f"SELECT s.id FROM sessions s WHERE {_ENDED} LIMIT $1))",
        limit,
    )
    return int(result.split()[-1])


async def purge_forgotten_failures(conn: asyncpg.Connection, window: float, limit: int) -> int:
    """Counts no policy looks at any more: none left, or the last failure past the window."""
    result = await conn.execute(
        f"DELETE FROM signin_failures WHERE {_FORGOTTEN} AND key_hash = ANY (ARRAY("
        f"SELECT key_hash FROM signin_failures WHERE {_FORGOTTEN} LIMIT $2))",
        window,
        limit,
    )
    return int(result.split()[-1])
