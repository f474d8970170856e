"""`python -m customers seed`: a demo customer to sign in as after `make run` (development only;
loaded once per database)."""

from __future__ import annotations

import logging

import asyncpg
from argon2 import PasswordHasher

from customers import queries
from customers.settings import CustomersSettings
from shared.http import new_id

log = logging.getLogger(__name__)

DEMO_EMAIL = "ada@example.com"
# Published in this repository, so development only; production refuses it as a key too
# (shared.settings.KNOWN_DEV_SECRETS).
DEMO_PASSWORD = "demo-lovelace-1815"
DEMO_ADDRESS = {
    "firstname": "Ada",
    "lastname": "Lovelace",
    "address": "12 St James's Square",
    "city": "London",
    "state": "Greater London",
    "postal_code": "SW1Y 4JH",
    "country": "GB",
    "shipping": True,
    "billing": True,
    "is_default": True,
}


async def load_demo(conn: asyncpg.Connection) -> str | None:
    """The demo customer and their address, unless the email is taken; their id, or None."""
    async with conn.transaction():
        # Two seeders at once (two `make run`s, replicas): one loads, the other sees it loaded.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('customers:seed'))")
        if await queries.email_taken(conn, DEMO_EMAIL):
            return None
        customer = await queries.insert_customer(
            conn,
            {
                "id": new_id(),
                "email": DEMO_EMAIL,
                "firstname": "Ada",
                "lastname": "Lovelace",
                "company_name": "Analytical Engines Ltd",
                "vat_no": None,
                "contact_number": None,
                "alt_contact_number": None,
                "password_hash": PasswordHasher().hash(DEMO_PASSWORD),
            },
        )
        await queries.insert_address(conn, {"id": new_id(), "customer_id": customer["id"], **DEMO_ADDRESS})
        return customer["id"]


async def seed(settings: CustomersSettings) -> None:
    if settings.environment != "development":
        return  # a known password has no place in production
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": settings.db_schema})
    try:
        loaded = await load_demo(conn)
    finally:
        await conn.close()
    log.info("demo customer", extra={"loaded": loaded is not None})
