"""Postgres: the runtime pool and the migrations runner.

Each service owns one schema and two roles: `<schema>_owner` owns the schema and its objects
and runs migrations; `<schema>_app` is what the service connects as at runtime, with data
rights on its own schema only. Platform tables (outbox, inbox, idempotency keys) come from
`shared/migrations` and are applied before the service's own files.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
from asyncpg.pool import PoolAcquireContext

from shared import metrics
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

PLATFORM_MIGRATIONS = Path(__file__).parent / "migrations"


def _count_statement(_: object) -> None:
    metrics.SQL_STATEMENTS.inc()


async def _init_connection(conn: asyncpg.Connection) -> None:
    conn.add_query_logger(_count_statement)
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, schema="pg_catalog", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No reset query when a connection goes back to the pool.

    asyncpg's default sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every
    release: one round trip per request, for session state this code never leaves behind (no
    session-level SET, advisory lock, cursor or LISTEN on a pooled connection: those live on
    dedicated connections). An open transaction is still rolled back by the pool itself, and the
    search_path is a connection start-up parameter, so nothing carries over between users.
    """


class PoolTimeout(TimeoutError):
    """No pooled connection became free within the acquire timeout: the service is saturated.

    A `TimeoutError`, so one of `shared.errors.UNAVAILABLE`: a request that meets it answers 503
    with `Retry-After` (nothing was done yet), an event handler is retried and never parked.
    """


class Pool(asyncpg.Pool):
    """asyncpg's pool, whose every acquire waits at most `acquire_timeout` seconds by default.

    Back-pressure instead of a pile-up: when every connection is busy, a request waits a bounded
    time for one and is then refused (503), rather than queueing behind the others for as long as
    they take. Set once here, it holds for every user of the pool: units of work, reads that
    acquire a connection themselves, the idempotency middleware, the relay, and the pool's own
    `fetch`/`execute` helpers (which acquire through `acquire()`).
    """

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout
        self.waiting = 0  # acquires under way: asyncpg keeps its waiters in a private queue

    def usage(self) -> metrics.PoolUsage:
        """Connections in use, idle, the maximum and the acquires waiting, for /metrics.

        From asyncpg's public counts (`get_size`, `get_idle_size`, `get_max_size`) and this class's
        own count of acquires in `_acquire`, rather than from the pool's private queue and holders.
        """
        size, idle = self.get_size(), self.get_idle_size()
        return metrics.PoolUsage(in_use=size - idle, idle=idle, max=self.get_max_size(), waiting=self.waiting)

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)

    async def _acquire(self, timeout: float | None) -> asyncpg.Connection:
        # The one step both `async with pool.acquire()` and `await pool.acquire()` go through
        # (asyncpg 0.32, pinned; tests/platform/test_back_pressure.py fails if that changes): its
        # bare TimeoutError becomes one that says what ran out.
        self.waiting += 1
        try:
            return await super()._acquire(timeout)
        except TimeoutError as exc:
            metrics.DB_ACQUIRE_TIMEOUTS.inc()
            raise PoolTimeout(f"no database connection became free within {timeout:g} s") from exc
        finally:
            self.waiting -= 1


async def create_pool(settings: ServiceSettings) -> Pool:
    pool = Pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        acquire_timeout=settings.db_acquire_timeout,
        command_timeout=settings.db_command_timeout,
        server_settings={"search_path": settings.db_schema, "application_name": settings.service},
        init=_init_connection,
        reset=_keep_session,
        # asyncpg.create_pool's defaults (it cannot build a subclass): the pool's own arguments.
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        loop=None,
    )
    return await pool


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def load_migrations(service_dir: Path) -> list[Migration]:
    """Platform files first (prefixed `platform/`), then the service's, each in name order."""
    migrations = [Migration(f"platform/{p.name}", p.read_text()) for p in sorted(PLATFORM_MIGRATIONS.glob("*.sql"))]
    migrations += [Migration(p.name, p.read_text()) for p in sorted(service_dir.glob("*.sql"))]
    return migrations


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _connect_creating_database(dsn: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        database = urlsplit(dsn).path.lstrip("/")
        admin = await asyncpg.connect(_with_database(dsn, "postgres"))
        try:
            await admin.execute(f'CREATE DATABASE "{database}"')
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()
        return await asyncpg.connect(dsn)


async def _ensure_role(conn: asyncpg.Connection, role: str) -> None:
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    if exists:
        return
    try:
        await conn.execute(f'CREATE ROLE "{role}" LOGIN')
    except asyncpg.DuplicateObjectError:
        pass  # created by a concurrent migrator (roles are cluster-wide)


async def migrate(settings: ServiceSettings, service_dir: Path) -> list[str]:
    """Apply pending migrations; returns the names applied. Safe to run concurrently and twice."""
    schema, owner, runtime = settings.db_schema, settings.owner_role, settings.runtime_role
    migrations = load_migrations(service_dir)
    conn = await _connect_creating_database(settings.migrate_database_url)
    applied_now: list[str] = []
    try:
        # One migrator per schema at a time, across processes and replicas.
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"migrate:{schema}")
        try:
            await _ensure_role(conn, owner)
            await _ensure_role(conn, runtime)
            if await conn.fetchval("SELECT current_user <> $1", owner):
                await conn.execute(f'GRANT "{owner}" TO CURRENT_USER')
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}" AUTHORIZATION "{owner}"')
            await conn.execute(f'REVOKE ALL ON SCHEMA "{schema}" FROM PUBLIC')
            await conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{runtime}"')
            await conn.execute(
                f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA "{schema}" '
                f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{runtime}"'
            )
            await conn.execute(
                f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA "{schema}" '
                f'GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO "{runtime}"'
            )
            await conn.execute(f'SET ROLE "{owner}"')
            await conn.execute(f'SET search_path TO "{schema}"')
            await conn.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    name text PRIMARY KEY,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            await conn.execute(f'REVOKE ALL ON schema_migrations FROM "{runtime}"')
            done = {r["name"]: r["checksum"] for r in await conn.fetch("SELECT name, checksum FROM schema_migrations")}
            for migration in migrations:
                if migration.name in done:
                    if done[migration.name] != migration.checksum:
                        raise MigrationError(
                            f"{schema}: migration {migration.name} changed after it was applied; "
                            "migrations are forward only: add a new file instead"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                        migration.name,
                        migration.checksum,
                    )
                applied_now.append(migration.name)
                log.info("migration applied", extra={"schema": schema, "migration": migration.name})
            await conn.execute("RESET ROLE")
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"migrate:{schema}")
    finally:
        await conn.close()
    return applied_now
