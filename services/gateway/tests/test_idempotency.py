"""Idempotency-Key on POST, in a real service app (basket's create_app) on the real database.

Test routes are added to the app before it starts; their effect is a row in the service's own
inbox table, so "one effect" is counted in the database, not in memory.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import orjson
import pytest
from aiohttp import web

from basket.app import create_app
from basket.settings import BasketSettings
from shared import http, idempotency, runtime
from tests.support import identity_headers

PATH = "/test/effects"


class Effects:
    """The test routes and what they saw."""

    def __init__(self) -> None:
        self.consumer = f"idem-{uuid.uuid4().hex[:12]}"
        self.entered = asyncio.Event()
        self.gate: asyncio.Event | None = None  # when set, the handler waits for it
        self.fail_next = 0  # answer 500 this many times first
        self.calls = 0

    async def create(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.json()
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("boom")  # a 500 from error_middleware
        if body.get("invalid"):
            raise http.ValidationFailed.one("invalid", "Not today.")
        if body.get("busy"):
            raise http.ApiError(409, "Busy")
        effect = uuid.uuid4()
        await request.app[runtime.POOL].execute(
            "INSERT INTO inbox (consumer, event_id, event_type) VALUES ($1, $2, 'test')", self.consumer, effect
        )
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        return http.json_response({"data": {"id": str(effect), "echo": body}}, status=201)

    async def count(self, pool: asyncpg.Pool) -> int:
        return await pool.fetchval("SELECT count(*) FROM inbox WHERE consumer = $1", self.consumer)


@pytest.fixture
async def service(aiohttp_client, infra):
    effects = Effects()
    app = create_app(infra.settings(BasketSettings))
    app.router.add_post(PATH, effects.create)
    client = await aiohttp_client(app)
    client.effects = effects  # type: ignore[attr-defined]
    client.pool = app[runtime.POOL]  # type: ignore[attr-defined]
    return client


def key() -> str:
    return str(uuid.uuid4())


async def post(client, body, idem: str | None, **headers):
    if idem is not None:
        headers["Idempotency-Key"] = idem
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    response = await client.post(PATH, data=data, headers={"Content-Type": "application/json", **headers})
    return response.status, await response.read(), response.headers


async def test_every_service_app_has_the_middleware_after_the_standard_ones(infra):
    from orders.app import create_app as orders_app
    from orders.settings import OrdersSettings
    from payments.app import create_app as payments_app
    from payments.settings import PaymentsSettings
    from shipping.app import create_app as shipping_app
    from shipping.settings import ShippingSettings

    for factory, settings_cls in (
        (create_app, BasketSettings),
        (orders_app, OrdersSettings),
        (shipping_app, ShippingSettings),
        (payments_app, PaymentsSettings),
    ):
        app = factory(infra.settings(settings_cls))
        names = [m.__name__ for m in app.middlewares]
        assert names[:3] == ["access_log_middleware", "request_id_middleware", "error_middleware"], settings_cls
        assert "idempotency" in names[3:], settings_cls


async def test_same_key_and_body_replays_the_first_response(service):
    idem = key()
    first = await post(service, {"a": 1, "b": [1, 2]}, idem)
    assert first[0] == 201
    assert "Idempotent-Replayed" not in first[2]
    # The same JSON, spelt differently, is the same request.
    again = await post(service, b'{ "b": [1,2], "a": 1 }', idem)
    assert again[0] == 201
    assert again[1] == first[1]
    assert again[2]["Content-Type"] == first[2]["Content-Type"]
    assert again[2]["Idempotent-Replayed"] == "true"
    assert service.effects.calls == 1
    assert await service.effects.count(service.pool) == 1


async def test_same_key_with_another_body_is_422(service):
    idem = key()
    assert (await post(service, {"a": 1}, idem))[0] == 201
    status, body, _ = await post(service, {"a": 2}, idem)
    assert status == 422
    assert orjson.loads(body) == {"idempotency_key": ["This Idempotency-Key was already used with another request."]}
    # Another path with the same key is another request too.
    response = await service.post("/test/effects?x=1", json={"a": 1}, headers={"Idempotency-Key": idem})
    assert response.status == 422
    assert await service.effects.count(service.pool) == 1


async def test_without_a_key_every_post_acts(service):
    assert [(await post(service, {"a": 1}, None))[0] for _ in range(2)] == [201, 201]
    assert await service.effects.count(service.pool) == 2


async def test_malformed_key_is_400(service):
    for bad in ("", "x" * 256, "with space", "naïve"):
        status, body, _ = await post(service, {"a": 1}, bad.encode("utf-8").decode("latin-1"))
        assert status == 400, bad
        assert orjson.loads(body)["error"]["http_code"] == 400
    assert service.effects.calls == 0


async def test_replay_while_the_first_is_in_flight_is_409(service):
    effects = service.effects
    effects.gate = asyncio.Event()
    idem = key()
    first = asyncio.create_task(post(service, {"a": 1}, idem))
    await asyncio.wait_for(effects.entered.wait(), 10)
    replays = await asyncio.gather(*(post(service, {"a": 1}, idem) for _ in range(5)))
    for status, body, headers in replays:
        assert status == 409
        assert orjson.loads(body) == {
            "error": {"http_code": 409, "message": "A request with this Idempotency-Key is still in progress"}
        }
        assert headers["Retry-After"] == "1"
    effects.gate.set()
    status, body, _ = await first
    assert status == 201
    replay = await post(service, {"a": 1}, idem)
    assert (replay[0], replay[1]) == (201, body)
    assert effects.calls == 1
    assert await effects.count(service.pool) == 1


async def test_concurrent_requests_with_one_key_have_one_effect(service):
    idem = key()
    results = await asyncio.gather(*(post(service, {"a": 1}, idem) for _ in range(20)))
    statuses = sorted(status for status, _, _ in results)
    assert set(statuses) <= {201, 409}
    created = {body for status, body, _ in results if status == 201}
    assert len(created) == 1  # every 201 is the same response
    assert service.effects.calls == 1
    assert await service.effects.count(service.pool) == 1


async def test_a_5xx_first_response_releases_the_key(service):
    service.effects.fail_next = 1
    idem = key()
    status, body, _ = await post(service, {"a": 1}, idem)
    assert status == 500
    assert orjson.loads(body) == {"error": {"http_code": 500, "message": "Internal server error"}}
    retry = await post(service, {"a": 1}, idem)
    assert retry[0] == 201
    replay = await post(service, {"a": 1}, idem)
    assert (replay[0], replay[1]) == (201, retry[1])
    assert service.effects.calls == 2
    assert await service.effects.count(service.pool) == 1


async def test_a_409_first_response_releases_the_key_and_a_422_is_kept(service):
    idem = key()
    assert (await post(service, {"busy": True}, idem))[0] == 409
    assert (await post(service, {"busy": True}, idem))[0] == 409
    assert service.effects.calls == 2  # ran twice: nothing was recorded

    idem = key()
    first = await post(service, {"invalid": True}, idem)
    assert first[0] == 422
    again = await post(service, {"invalid": True}, idem)
    assert (again[0], again[1], again[2]["Idempotent-Replayed"]) == (422, first[1], "true")
    assert service.effects.calls == 3


async def test_keys_are_scoped_per_admin_identity(service):
    idem = key()
    ops = identity_headers("ops")
    other = identity_headers("other")
    assert (await post(service, {"a": 1}, idem, **ops))[0] == 201
    assert (await post(service, {"a": 2}, idem, **other))[0] == 201
    assert (await post(service, {"a": 3}, idem))[0] == 201  # the storefront scope
    assert await service.effects.count(service.pool) == 3


async def test_an_abandoned_claim_is_taken_over_after_its_lease(service, admin_db):
    body = {"a": 1}
    digest = idempotency.request_hash("POST", PATH, orjson.dumps(body))
    fresh, abandoned = key(), key()
    await admin_db.execute(
        "INSERT INTO basket.idempotency_keys (key, scope, request_hash, created_at) "
        "VALUES ($1, 'storefront', $3, now()), ($2, 'storefront', $3, now() - interval '10 minutes')",
        fresh,
        abandoned,
        digest,
    )
    assert (await post(service, body, fresh))[0] == 409  # its request may still be running
    assert (await post(service, body, abandoned))[0] == 201  # its process died long ago
    row = await admin_db.fetchrow(
        "SELECT status, completed_at FROM basket.idempotency_keys WHERE key = $1 AND scope = 'storefront'",
        abandoned,
    )
    assert row["status"] == 201 and row["completed_at"] is not None


async def test_keys_are_kept_24_hours_then_purged(service, admin_db):
    old, recent = key(), key()
    await admin_db.execute(
        "INSERT INTO basket.idempotency_keys (key, scope, request_hash, status, created_at) VALUES "
        "($1, 'purge-test', 'h', 201, now() - interval '25 hours'), "
        "($2, 'purge-test', 'h', 201, now() - interval '23 hours')",
        old,
        recent,
    )
    deleted = await idempotency.purge(service.pool, timedelta(hours=24), batch=1)
    assert deleted >= 1
    left = await admin_db.fetch("SELECT key FROM basket.idempotency_keys WHERE scope = 'purge-test'")
    assert [r["key"] for r in left] == [recent]
    with pytest.raises(ValueError, match="at least 24 hours"):
        idempotency.middleware(retention=timedelta(hours=1))


async def test_gets_keyless_posts_and_unknown_routes_are_not_recorded(service, admin_db):
    before = await admin_db.fetchval("SELECT count(*) FROM basket.idempotency_keys")
    await service.get("/health/live", headers={"Idempotency-Key": key()})
    await post(service, {"a": 1}, None)
    response = await service.post("/no/such/route", json={"a": 1}, headers={"Idempotency-Key": key()})
    assert response.status == 404
    assert await admin_db.fetchval("SELECT count(*) FROM basket.idempotency_keys") == before


# ---------------------------------------------------------------------------------------------
# Through the gateway, on a real endpoint of the running stack


def test_through_the_gateway_concurrent_basket_creations_with_one_key_make_one_basket(stack):
    import concurrent.futures
    import json
    import urllib.error
    import urllib.request

    idem = key()
    payload = json.dumps({"variants": [], "meta": {"test": idem}}).encode()

    def create() -> tuple[int, bytes]:
        request = urllib.request.Request(
            stack.gateway + "/baskets",
            data=payload,
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": idem},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: create(), range(8)))
    assert {status for status, _ in results} <= {200, 409}
    ids = {json.loads(body)["data"]["id"] for status, body in results if status == 200}
    assert len(ids) == 1
    # A retry after the race returns the same basket.
    status, body = create()
    assert (status, json.loads(body)["data"]["id"]) == (200, ids.pop())

    async def baskets_with_tag() -> int:
        conn = await asyncpg.connect(stack.infra.admin_dsn)
        try:
            return await conn.fetchval("SELECT count(*) FROM basket.baskets WHERE meta->>'test' = $1", idem)
        finally:
            await conn.close()

    assert asyncio.run(baskets_with_tag()) == 1
