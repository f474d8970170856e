"""All SQL of the shipping service (explicit columns; search_path is the shipping schema)."""

from __future__ import annotations

from typing import Any

import asyncpg

from shipping.domain import Candidate

ZONE_COLUMNS = "id, name, countries, created_at, updated_at"
REGION_COLUMNS = "id, zone_id, name, prefixes"
METHOD_COLUMNS = "id, type, name, description, code, created_at, updated_at"
PRICE_COLUMNS = (
    "id, method_id, zone_id, region_id, rate, currency, min_basket, min_weight, max_weight, fixed, "
    "created_at, updated_at"
)
SHIPMENT_COLUMNS = (
    "id, order_id, reference, status, shipping_method, shipping_price_id, address, tracking_no, dispatched_at, "
    "version, created_at, updated_at"
)

# A price with its method, zone and region, as the quote and the admin list show it.
_PRICE_DETAIL = """
    SELECT p.id, p.method_id, p.zone_id, p.region_id, p.rate, p.currency, p.min_basket, p.min_weight,
           p.max_weight, p.fixed, p.created_at, p.updated_at,
           m.type AS method_type, m.name AS method_name, m.description AS method_description,
           m.code AS method_code, z.name AS zone_name, z.countries AS zone_countries,
           r.name AS region_name, r.prefixes AS region_prefixes
    FROM prices p
    JOIN methods m ON m.id = p.method_id
    JOIN zones z ON z.id = p.zone_id
    LEFT JOIN zone_regions r ON r.id = p.region_id
"""


def _update(table: str, columns: str, key: str, changes: dict[str, Any]) -> tuple[str, list[Any]]:
    """`UPDATE table SET a = $2, b = $3, updated_at = now() WHERE id = $1 RETURNING ...`."""
    assignments = [f"{name} = ${i}" for i, name in enumerate(changes, start=2)]
    if table != "zone_regions":
        assignments.append("updated_at = now()")
    sql = f"UPDATE {table} SET {', '.join(assignments)} WHERE id = $1 RETURNING {columns}"
    return sql, [key, *changes.values()]


# ---------------------------------------------------------------------------------------------
# Zones and regions


async def zones(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {ZONE_COLUMNS} FROM zones ORDER BY name, id")


async def zone(conn: asyncpg.Connection, zone_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(f"SELECT {ZONE_COLUMNS} FROM zones WHERE id = $1{suffix}", zone_id)


async def zone_by_name(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {ZONE_COLUMNS} FROM zones WHERE name = $1", name)


async def insert_zone(conn: asyncpg.Connection, zone_id: str, name: str, countries: list[str]) -> asyncpg.Record:
    return await conn.fetchrow(
        f"INSERT INTO zones (id, name, countries) VALUES ($1, $2, $3) RETURNING {ZONE_COLUMNS}",
        zone_id,
        name,
        countries,
    )


async def update_zone(conn: asyncpg.Connection, zone_id: str, changes: dict[str, Any]) -> asyncpg.Record | None:
    if not changes:
        return await zone(conn, zone_id)
    sql, args = _update("zones", ZONE_COLUMNS, zone_id, changes)
    return await conn.fetchrow(sql, *args)


async def regions(conn: asyncpg.Connection, zone_ids: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {REGION_COLUMNS} FROM zone_regions WHERE zone_id = ANY($1::text[]) ORDER BY name, id", zone_ids
    )


async def insert_region(
    conn: asyncpg.Connection, region_id: str, zone_id: str, name: str, prefixes: list[str]
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"INSERT INTO zone_regions (id, zone_id, name, prefixes) VALUES ($1, $2, $3, $4) RETURNING {REGION_COLUMNS}",
        region_id,
        zone_id,
        name,
        prefixes,
    )


async def region_by_name(conn: asyncpg.Connection, zone_id: str, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {REGION_COLUMNS} FROM zone_regions WHERE zone_id = $1 AND name = $2", zone_id, name
    )


async def update_region(
    conn: asyncpg.Connection, region_id: str, zone_id: str, name: str, prefixes: list[str]
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"UPDATE zone_regions SET name = $3, prefixes = $4 WHERE id = $1 AND zone_id = $2 RETURNING {REGION_COLUMNS}",
        region_id,
        zone_id,
        name,
        prefixes,
    )


async def delete_regions_except(conn: asyncpg.Connection, zone_id: str, keep: list[str]) -> None:
    await conn.execute("DELETE FROM zone_regions WHERE zone_id = $1 AND NOT (id = ANY($2::text[]))", zone_id, keep)


# ---------------------------------------------------------------------------------------------
# Methods


async def methods(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {METHOD_COLUMNS} FROM methods ORDER BY name, id")


async def method(conn: asyncpg.Connection, method_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {METHOD_COLUMNS} FROM methods WHERE id = $1", method_id)


async def method_by_code(conn: asyncpg.Connection, code: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {METHOD_COLUMNS} FROM methods WHERE code = $1", code)


async def insert_method(
    conn: asyncpg.Connection, method_id: str, type_: str, name: str, description: str | None, code: str | None
) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO methods (id, type, name, description, code) VALUES ($1, $2, $3, $4, $5) "
        f"RETURNING {METHOD_COLUMNS}",
        method_id,
        type_,
        name,
        description,
        code,
    )


async def update_method(conn: asyncpg.Connection, method_id: str, changes: dict[str, Any]) -> asyncpg.Record | None:
    if not changes:
        return await method(conn, method_id)
    sql, args = _update("methods", METHOD_COLUMNS, method_id, changes)
    return await conn.fetchrow(sql, *args)


# ---------------------------------------------------------------------------------------------
# Prices


async def price_details(conn: asyncpg.Connection, price_id: str | None = None) -> list[asyncpg.Record]:
    if price_id is None:
        return await conn.fetch(_PRICE_DETAIL + " ORDER BY z.name, m.name, p.rate, p.id")
    return await conn.fetch(_PRICE_DETAIL + " WHERE p.id = $1", price_id)


async def candidates_for_country(conn: asyncpg.Connection, country: str) -> list[Candidate]:
    rows = await conn.fetch(_PRICE_DETAIL + " WHERE z.countries @> ARRAY[$1::text]", country)
    return [candidate(row) for row in rows]


def candidate(row: asyncpg.Record) -> Candidate:
    return Candidate(
        id=row["id"],
        rate=row["rate"],
        currency=row["currency"],
        min_basket=row["min_basket"],
        min_weight=row["min_weight"],
        max_weight=row["max_weight"],
        fixed=row["fixed"],
        method_id=row["method_id"],
        method_type=row["method_type"],
        method_name=row["method_name"],
        method_description=row["method_description"],
        method_code=row["method_code"],
        zone_id=row["zone_id"],
        zone_name=row["zone_name"],
        countries=frozenset(row["zone_countries"]),
        region_prefixes=tuple(row["region_prefixes"]) if row["region_prefixes"] is not None else None,
    )


async def priced_methods(conn: asyncpg.Connection, zone_ids: list[str]) -> set[tuple[str, str, str]]:
    """(method id, zone id, currency) of every price in these zones."""
    rows = await conn.fetch(
        "SELECT DISTINCT method_id, zone_id, currency FROM prices WHERE zone_id = ANY($1::text[])", zone_ids
    )
    return {(row["method_id"], row["zone_id"], row["currency"]) for row in rows}


async def price(conn: asyncpg.Connection, price_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(f"SELECT {PRICE_COLUMNS} FROM prices WHERE id = $1{suffix}", price_id)


async def region_in_zone(conn: asyncpg.Connection, region_id: str, zone_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM zone_regions WHERE id = $1 AND zone_id = $2", region_id, zone_id))


async def insert_price(conn: asyncpg.Connection, values: dict[str, Any]) -> asyncpg.Record:
    columns = list(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return await conn.fetchrow(
        f"INSERT INTO prices ({', '.join(columns)}) VALUES ({placeholders}) RETURNING {PRICE_COLUMNS}",
        *values.values(),
    )


async def update_price(conn: asyncpg.Connection, price_id: str, changes: dict[str, Any]) -> asyncpg.Record | None:
    if not changes:
        return await price(conn, price_id)
    sql, args = _update("prices", PRICE_COLUMNS, price_id, changes)
    return await conn.fetchrow(sql, *args)


# ---------------------------------------------------------------------------------------------
# Shipments


async def lock_order(conn: asyncpg.Connection, order_id: str) -> None:
    """Serialise what shipping does for one order (its placement, its payment) until the
    transaction ends. The order is not a row here, so the lock is on its id."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('shipping.order:' || $1, 0))", order_id)


async def is_paid(conn: asyncpg.Connection, order_id: str) -> bool:
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM paid_orders WHERE order_id = $1)", order_id)


async def record_paid(conn: asyncpg.Connection, order_id: str) -> None:
    await conn.execute("INSERT INTO paid_orders (order_id) VALUES ($1) ON CONFLICT (order_id) DO NOTHING", order_id)


async def open_shipment(
    conn: asyncpg.Connection,
    shipment_id: str,
    order_id: str,
    reference: str | None,
    shipping_method: str | None,
    shipping_price_id: str | None,
    address: dict[str, Any] | None,
    status: str,
) -> str | None:
    """The order's shipment (`open`, or `held` until its order is paid); None when the order has
    one already (one shipment per order: a copy running concurrently waits on the unique key
    until the first commits, then finds it)."""
    return await conn.fetchval(
        "INSERT INTO shipments (id, order_id, reference, shipping_method, shipping_price_id, address, status) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (order_id) DO NOTHING RETURNING id",
        shipment_id,
        order_id,
        reference,
        shipping_method,
        shipping_price_id,
        address,
        status,
    )


async def release_held(conn: asyncpg.Connection, order_id: str) -> str | None:
    """Compare-and-set held -> open: the shipment's id for the one call that opened it, else None."""
    return await conn.fetchval(
        "UPDATE shipments SET status = 'open', version = version + 1, updated_at = now() "
        "WHERE order_id = $1 AND status = 'held' RETURNING id",
        order_id,
    )


async def lock_shipment(conn: asyncpg.Connection, shipment_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE id = $1 FOR UPDATE", shipment_id)


_SHIPMENT_FILTER = "WHERE ($1::text IS NULL OR order_id = $1) AND ($2::text IS NULL OR status = $2)"


async def count_shipments(conn: asyncpg.Connection, order_id: str | None, status: str | None) -> int:
    return await conn.fetchval(f"SELECT count(*) FROM shipments {_SHIPMENT_FILTER}", order_id, status)


async def shipments_page(
    conn: asyncpg.Connection, order_id: str | None, status: str | None, limit: int, offset: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {SHIPMENT_COLUMNS} FROM shipments {_SHIPMENT_FILTER} ORDER BY created_at DESC, id LIMIT $3 OFFSET $4",
        order_id,
        status,
        limit,
        offset,
    )


async def dispatch(conn: asyncpg.Connection, shipment_id: str, tracking_no: str | None) -> asyncpg.Record:
    """Open -> dispatched, on a shipment the caller holds locked (`lock_shipment`)."""
    return await conn.fetchrow(
        "UPDATE shipments SET status = 'dispatched', tracking_no = COALESCE($2, tracking_no), "
        "dispatched_at = now(), version = version + 1, updated_at = now() "
        f"WHERE id = $1 RETURNING {SHIPMENT_COLUMNS}",
        shipment_id,
        tracking_no,
    )
