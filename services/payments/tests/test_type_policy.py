"""Payment types by policy: the pure rules, the admin routes, what a fresh installation offers,
and what the storefront and checkout's `payment.resolve` accept after a change."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from payments import domain
from payments.__main__ import MIGRATIONS
from payments.app import create_app
from payments.providers import VALID_NONCE
from payments.seed import seed_types
from payments.settings import PaymentsSettings
from shared import bus, db
from shared.contracts import ResolvePayment
from shared.http import new_id
from tests.support import delete_bus_namespace, identity_headers

INVALID = ["The selected payment type is invalid."]

# ---------------------------------------------------------------------------------------------
# The pure rules


@pytest.mark.parametrize(
    ("enabled", "offered", "open_"),
    [(True, True, True), (True, False, False), (False, True, False), (False, False, False)],
)
def test_checkout_needs_enabled_and_offered(enabled: bool, offered: bool, open_: bool) -> None:
    assert domain.open_for_checkout(enabled, offered) is open_


def test_a_change_sets_only_what_it_names() -> None:
    current = domain.Policy(enabled=True, offered=False)
    assert domain.change_policy(current, enabled=None, offered=True, provider_available=True) == domain.Policy(
        True, True
    )
    assert domain.change_policy(current, enabled=False, offered=None, provider_available=True) == domain.Policy(
        False, False
    )
    assert domain.change_policy(current, enabled=None, offered=None, provider_available=True) == current


@pytest.mark.parametrize("name", ["enabled", "offered"])
def test_switching_on_needs_a_provider(name: str) -> None:
    off = domain.Policy(enabled=False, offered=False)
    with pytest.raises(domain.PolicyRefused) as refused:
        domain.change_policy(off, **{"enabled": None, "offered": None, name: True}, provider_available=False)
    assert (refused.value.field, refused.value.message) == (name, domain.NO_PROVIDER)


def test_switching_off_or_keeping_needs_no_provider() -> None:
    on = domain.Policy(enabled=True, offered=True)
    assert domain.change_policy(on, enabled=False, offered=False, provider_available=False) == domain.Policy(
        False, False
    )
    # Already on: naming it again is no switch.
    assert domain.change_policy(on, enabled=True, offered=None, provider_available=False) == on


# ---------------------------------------------------------------------------------------------
# The admin routes, on the app in-process


@pytest.fixture
async def client(aiohttp_client, settings: PaymentsSettings, pool: asyncpg.Pool) -> Any:
    return await aiohttp_client(create_app(settings))


@contextlib.asynccontextmanager
async def restored(pool: asyncpg.Pool, *handles: str) -> AsyncIterator[None]:
    """The types' policy as it was before the test (the demo's: other tests rely on it)."""
    rows = await pool.fetch("SELECT handle, enabled, offered FROM payment_types WHERE handle = ANY($1)", list(handles))
    try:
        yield
    finally:
        for row in rows:
            await pool.execute(
                "UPDATE payment_types SET enabled = $2, offered = $3 WHERE handle = $1",
                row["handle"],
                row["enabled"],
                row["offered"],
            )


async def call(client: Any, method: str, path: str, body: Any = None, headers: Any = "admin") -> tuple[int, Any]:
    headers = identity_headers() if headers == "admin" else headers
    response = await client.request(method, f"/api/v1{path}", json=body, headers=headers)
    return response.status, await response.json()


async def type_id(pool: asyncpg.Pool, handle: str) -> str:
    return await pool.fetchval("SELECT id FROM payment_types WHERE handle = $1", handle)


async def storefront_handles(client: Any) -> list[str]:
    status, body = await call(client, "GET", "/payments/types", headers={})
    assert status == 200
    return sorted(t["handle"] for t in body["data"])


async def test_admin_lists_every_type_with_its_policy(client, pool):
    async with restored(pool, "offline"):
        await pool.execute("UPDATE payment_types SET offered = false WHERE handle = 'offline'")
        status, body = await call(client, "GET", "/payments/types/all")
        assert status == 200
        by_handle = {t["handle"]: t for t in body["data"]}
        assert {k: by_handle["card"][k] for k in ("driver", "success_status", "enabled", "offered")} == {
            "driver": "sandbox",
            "success_status": "payment-received",
            "enabled": True,
            "offered": True,
        }
        assert (by_handle["card"]["paid_on_success"], by_handle["card"]["available"]) == (True, True)
        offline = by_handle["offline"]
        assert (offline["enabled"], offline["offered"], offline["paid_on_success"]) == (True, False, False)
        assert set(offline) == {
            "id",
            "name",
            "handle",
            "driver",
            "success_status",
            "enabled",
            "offered",
            "paid_on_success",
            "available",
            "version",
        }
        # The storefront sees only what a checkout may use, in its own (upstream's) shape.
        assert "offline" not in await storefront_handles(client)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "/payments/types/all", None), ("PUT", "/payments/types/{id}", {"offered": False})],
)
async def test_admin_routes_need_an_admin(client, pool, method, path, body):
    path = path.format(id=await type_id(pool, "offline"))
    before = await pool.fetchrow("SELECT enabled, offered, version FROM payment_types WHERE handle = 'offline'")
    status, answer = await call(client, method, path, body, headers={})
    assert (status, answer["error"]["http_code"]) == (401, 401)
    status, answer = await call(client, method, path, body, headers=identity_headers(roles=("customer",)))
    assert (status, answer["error"]["http_code"]) == (403, 403)
    after = await pool.fetchrow("SELECT enabled, offered, version FROM payment_types WHERE handle = 'offline'")
    assert after == before


async def test_unknown_type_is_404(client):
    for key in (new_id(), "NOT-AN-ID", "card"):
        status, body = await call(client, "PUT", f"/payments/types/{key}", {"enabled": False})
        assert (status, body["error"]["http_code"]) == (404, 404)


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"enabled": ["The enabled field is required when offered is not present."]}),
        ({"version": 1}, {"enabled": ["The enabled field is required when offered is not present."]}),
        ({"enabled": None}, {"enabled": ["This field cannot be null."]}),
        ({"enabled": True, "offered": None}, {"offered": ["This field cannot be null."]}),
        ({"enabled": "yes"}, {"enabled": ["Input should be a valid boolean"]}),
        ({"offered": 1}, {"offered": ["Input should be a valid boolean"]}),
        ({"enabled": True, "version": 0}, {"version": ["Input should be greater than or equal to 1"]}),
        ({"enabled": True, "version": "2"}, {"version": ["Input should be a valid integer"]}),
        ({"enabled": True, "version": 2**31}, {"version": ["Input should be less than or equal to 2147483647"]}),
        ([], {"body": ["The request body must be a JSON object"]}),
    ],
)
async def test_bad_bodies_are_422_and_change_nothing(client, pool, body, errors):
    before = await pool.fetchrow("SELECT enabled, offered, version FROM payment_types WHERE handle = 'offline'")
    status, answer = await call(client, "PUT", f"/payments/types/{await type_id(pool, 'offline')}", body)
    assert (status, answer) == (422, errors)
    assert await pool.fetchrow("SELECT enabled, offered, version FROM payment_types WHERE handle = 'offline'") == before


async def test_withdraw_and_offer_again(client, pool):
    offline = await type_id(pool, "offline")
    async with restored(pool, "offline"):
        version = await pool.fetchval("SELECT version FROM payment_types WHERE id = $1", offline)
        status, body = await call(client, "PUT", f"/payments/types/{offline}", {"offered": False})
        assert status == 200, body
        assert (body["data"]["enabled"], body["data"]["offered"], body["data"]["version"]) == (True, False, version + 1)
        assert await storefront_handles(client) == ["card"]

        # The same again is no change: no new version.
        status, body = await call(client, "PUT", f"/payments/types/{offline}", {"offered": False, "enabled": True})
        assert (status, body["data"]["version"]) == (200, version + 1)

        status, body = await call(
            client, "PUT", f"/payments/types/{offline}", {"offered": True, "version": version + 1}
        )
        assert (status, body["data"]["offered"], body["data"]["version"]) == (200, True, version + 2)
        assert await storefront_handles(client) == ["card", "offline"]

        # A change planned on an older version is refused and changes nothing.
        status, body = await call(client, "PUT", f"/payments/types/{offline}", {"enabled": False, "version": version})
        assert (status, body) == (
            409,
            {"error": {"http_code": 409, "message": "This payment type has changed since that version"}},
        )
        row = await pool.fetchrow("SELECT enabled, offered, version FROM payment_types WHERE id = $1", offline)
        assert tuple(row) == (True, True, version + 2)


async def test_concurrent_changes_are_each_a_compare_and_set(client, pool):
    """Ten admins at once, all from the version they read: one change wins, the others are told
    the type changed since. Ten without a version: each applies to the version it finds (or is
    told to try again), and no change is lost or applied twice."""
    offline = await type_id(pool, "offline")
    path = f"/payments/types/{offline}"
    async with restored(pool, "offline"):
        version = await pool.fetchval("SELECT version FROM payment_types WHERE id = $1", offline)
        results = await asyncio.gather(
            *(call(client, "PUT", path, {"offered": False, "version": version}) for _ in range(10))
        )
        assert sorted(status for status, _ in results) == [200] + [409] * 9
        assert await pool.fetchval("SELECT version FROM payment_types WHERE id = $1", offline) == version + 1

        start = version + 1
        flips = [{"offered": i % 2 == 0} for i in range(10)]
        results = await asyncio.gather(*(call(client, "PUT", path, body) for body in flips))
        assert all(status in (200, 409) for status, _ in results)
        answered = [body["data"] for status, body in results if status == 200]
        row = await pool.fetchrow("SELECT offered, version FROM payment_types WHERE id = $1", offline)
        # Each version after `start` is one change, answered to the request that made it; the
        # answers of the last version agree with what is stored.
        assert set(range(start + 1, row["version"] + 1)) <= {data["version"] for data in answered}
        assert {data["offered"] for data in answered if data["version"] == row["version"]} <= {row["offered"]}


@pytest.fixture
async def sandboxless(aiohttp_client, settings, pool) -> AsyncIterator[Any]:
    """The app as production runs it, without the sandbox, on a bus namespace of its own (it
    could not charge the session stack's card payments)."""
    update = {"sandbox_enabled": False, "default_provider": "offline", "bus_namespace": f"{settings.bus_namespace}s"}
    yield await aiohttp_client(create_app(settings.model_copy(update=update)))
    await delete_bus_namespace(settings.amqp_url, update["bus_namespace"])


async def test_a_type_without_a_provider_cannot_be_switched_on(sandboxless, pool):
    """Without the sandbox, the card type cannot be charged here: it can be switched off, not on,
    and the storefront does not list it."""
    client = sandboxless
    card = await type_id(pool, "card")
    async with restored(pool, "card"):
        assert await storefront_handles(client) == ["offline"]
        status, body = await call(client, "GET", "/payments/types/all")
        assert {t["handle"]: t["available"] for t in body["data"]}["card"] is False
        status, body = await call(client, "PUT", f"/payments/types/{card}", {"offered": False})
        assert (status, body["data"]["offered"]) == (200, False)
        status, body = await call(client, "PUT", f"/payments/types/{card}", {"offered": True})
        assert (status, body) == (422, {"offered": [domain.NO_PROVIDER]})
        assert await pool.fetchval("SELECT offered FROM payment_types WHERE id = $1", card) is False


# ---------------------------------------------------------------------------------------------
# The policy at checkout: `payment.resolve` over the real bus


@pytest.fixture
async def rpc(client, settings) -> AsyncIterator[bus.RpcClient]:
    caller = bus.RpcClient(bus.Topology(settings.bus_namespace, "orders"), default_timeout=5.0)
    connection = await bus.connect(settings)
    await caller.start(connection)
    yield caller
    await caller.stop()
    await connection.close()


async def test_checkout_accepts_only_a_type_enabled_and_offered(client, rpc, pool):
    offline = await type_id(pool, "offline")

    async def resolve() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        by_handle = await rpc.call(ResolvePayment(payment_type="offline"))
        by_id = await rpc.call(ResolvePayment(payment_type_id=offline))
        return by_handle.errors, by_id.errors

    async with restored(pool, "offline"):
        assert await resolve() == ({}, {})
        await call(client, "PUT", f"/payments/types/{offline}", {"offered": False})
        assert await resolve() == ({"payment_type": INVALID}, {"payment_type_id": INVALID})
        await call(client, "PUT", f"/payments/types/{offline}", {"offered": True, "enabled": False})
        assert await resolve() == ({"payment_type": INVALID}, {"payment_type_id": INVALID})
        await call(client, "PUT", f"/payments/types/{offline}", {"enabled": True})
        assert await resolve() == ({}, {})
        # The card type is untouched by all this.
        assert (await rpc.call(ResolvePayment(payment_token=VALID_NONCE))).errors == {}


async def test_a_disabled_type_is_never_charged(client, checkout, pool):
    """Disabling is the kill switch: a charge already requested with the type is declined."""
    offline = await type_id(pool, "offline")
    async with restored(pool, "offline"):
        msg = await checkout.request(None, handle="offline")
        await call(client, "PUT", f"/payments/types/{offline}", {"enabled": False})
        await checkout.deliver(msg)
        [declined] = checkout.emitted
        assert (declined.type, declined.reason) == ("payment.declined", domain.UNKNOWN_TYPE)
        assert await checkout.charges(msg.order_id) == []


async def test_a_capture_says_whether_money_was_received(checkout):
    card = await checkout.request(VALID_NONCE)
    offline = await checkout.request(None, handle="offline")
    await checkout.deliver(card)
    await checkout.deliver(offline)
    assert [(e.type, e.order_id, e.paid) for e in checkout.emitted] == [
        ("payment.captured", card.order_id, True),
        ("payment.captured", offline.order_id, False),
    ]


# ---------------------------------------------------------------------------------------------
# A fresh installation: the migrations alone, on a schema of its own


FRESH = "pt_payments_fresh"


@pytest.fixture
async def fresh(infra, admin_db) -> AsyncIterator[PaymentsSettings]:
    """Migrated for each test, dropped after it; its own bus namespace, so that its app never
    takes the session stack's messages."""
    settings = infra.settings(
        PaymentsSettings, db_schema=FRESH, database_url=infra.runtime_dsn(FRESH), bus_namespace=f"{infra.namespace}f"
    )
    await db.migrate(settings, MIGRATIONS)
    yield settings
    await admin_db.execute(f"DROP SCHEMA {FRESH} CASCADE")
    await delete_bus_namespace(settings.amqp_url, settings.bus_namespace)


async def test_a_fresh_install_offers_only_the_card_type(fresh, aiohttp_client, admin_db):
    rows = await admin_db.fetch(
        f"SELECT handle, enabled, offered, paid_on_success FROM {fresh.db_schema}.payment_types ORDER BY handle"
    )
    assert [tuple(r) for r in rows] == [("card", True, True, True), ("offline", False, False, False)]

    client = await aiohttp_client(create_app(fresh))
    assert await storefront_handles(client) == ["card"]
    caller = bus.RpcClient(bus.Topology(fresh.bus_namespace, "orders"), default_timeout=5.0)
    connection = await bus.connect(fresh)
    await caller.start(connection)
    try:
        assert (await caller.call(ResolvePayment(payment_type="offline"))).errors == {"payment_type": INVALID}
        assert (await caller.call(ResolvePayment(payment_token=VALID_NONCE))).errors == {}
    finally:
        await caller.stop()
        await connection.close()


async def test_the_demo_seed_offers_offline_once_and_respects_an_admin(fresh, aiohttp_client, admin_db):
    pool = await db.create_pool(fresh)
    try:
        async with pool.acquire() as conn:
            assert await seed_types(conn) == 0  # the migrations installed both types
        client = await aiohttp_client(create_app(fresh))
        assert await storefront_handles(client) == ["card", "offline"]

        offline = await type_id(pool, "offline")
        status, _ = await call(client, "PUT", f"/payments/types/{offline}", {"enabled": False})
        assert status == 200
        async with pool.acquire() as conn:
            assert await seed_types(conn) == 0
        # The admin's decision stands: the seed does not switch it on again.
        assert await storefront_handles(client) == ["card"]
    finally:
        await pool.close()
