"""Migrations: idempotent, checksummed, forward only; roles confined to their own schema."""

from __future__ import annotations

import asyncpg
import pytest

from basket.settings import BasketSettings
from orders.settings import OrdersSettings
from shared import db
from shared.settings import ServiceSettings
from tests.support import ROOT, SERVICES, Infra


def settings_cls(service: str) -> type[ServiceSettings]:
    module = __import__(f"{service}.settings", fromlist=["x"])
    found = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, ServiceSettings)]
    return next(v for v in found if v is not ServiceSettings)


@pytest.mark.parametrize("service", SERVICES)
async def test_migrating_twice_is_a_no_op(infra: Infra, service: str):
    directory = ROOT / "services" / service / service / "migrations"
    settings = infra.settings(settings_cls(service))
    assert await db.migrate(settings, directory) == []  # already applied by the session fixture
    conn = await asyncpg.connect(infra.admin_dsn)
    try:
        names = await conn.fetch(f"SELECT name FROM {service}.schema_migrations ORDER BY name")
    finally:
        await conn.close()
    expected = {f"platform/{p.name}" for p in (ROOT / "shared" / "migrations").glob("*.sql")}
    expected |= {p.name for p in directory.glob("*.sql")}
    assert {r["name"] for r in names} == expected


async def test_a_changed_migration_is_refused(infra: Infra, tmp_path):
    settings = infra.settings(OrdersSettings, db_schema="pt_changed")
    (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id int PRIMARY KEY);")
    platform = [f"platform/{p.name}" for p in sorted((ROOT / "shared" / "migrations").glob("*.sql"))]
    assert await db.migrate(settings, tmp_path) == [*platform, "0001_things.sql"]
    (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id bigint PRIMARY KEY);")
    with pytest.raises(db.MigrationError, match="forward only"):
        await db.migrate(settings, tmp_path)


async def test_a_failing_migration_leaves_nothing_half_applied(infra: Infra, tmp_path):
    settings = infra.settings(OrdersSettings, db_schema="pt_broken")
    (tmp_path / "0001_broken.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await db.migrate(settings, tmp_path)
    conn = await asyncpg.connect(infra.admin_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('pt_broken.half')") is None
        applied = await conn.fetchval("SELECT count(*) FROM pt_broken.schema_migrations WHERE name LIKE '0001%'")
        assert applied == 0
    finally:
        await conn.close()


async def test_runtime_role_cannot_read_another_services_schema(infra: Infra):
    basket = await asyncpg.connect(infra.runtime_dsn("basket"))
    try:
        assert await basket.fetchval("SELECT current_user") == "basket_app"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await basket.fetch("SELECT event_id FROM orders.outbox")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await basket.execute("CREATE TABLE basket.not_allowed (id int)")
        # its own schema: data rights, yes
        assert await basket.fetchval("SELECT count(*) FROM basket.outbox") >= 0
    finally:
        await basket.close()


async def test_settings_defaults_are_loopback_and_per_service(monkeypatch):
    monkeypatch.setenv("ORDERS_PORT", "9100")
    orders = OrdersSettings()
    assert orders.port == 9100
    assert orders.database_url == "postgresql://orders_app@127.0.0.1:5432/commerce"
    assert orders.amqp_url.startswith("amqp://guest:guest@127.0.0.1:5672")
    assert BasketSettings().port == 8001  # another prefix is untouched
