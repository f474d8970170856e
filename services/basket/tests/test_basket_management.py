"""Basket management (issue 18): `PUT /basket-lines/{id}/add` (and its POST alias),
`POST /baskets/{id}/meta`, `PUT /baskets/{id}`, `DELETE /baskets/{id}`, in-process against the
real database and broker, and through the gateway."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest

from basket import domain
from basket.baskets import MSG_IN_FLIGHT
from basket.consumers import on_order_failed, on_order_placed, on_order_stock_requested
from gateway.auth import mint_token
from gateway.settings import GatewaySettings
from services.basket.tests.testkit import API, create_variant, deliver, event_tap, sku
from shared.contracts import LineQuantity, OrderFailed, OrderPlaced, OrderStockRequested
from shared.http import META_MAX_BYTES

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

FORBIDDEN_USED = {"error": {"http_code": 403, "message": domain.MSG_BASKET_USED}}
NOT_FOUND = {"error": {"http_code": 404, "message": "Resource not found"}}


async def new_basket(client: Any, variant_id: str, quantity: int = 1, **body: Any) -> dict[str, Any]:
    response = await client.post(
        f"{API}/baskets?include=lines", json={"variants": [{"id": variant_id, "quantity": quantity}], **body}
    )
    assert response.status == 200, await response.text()
    return (await response.json())["data"]


async def state(client: Any, admin_db: asyncpg.Connection, basket_id: str) -> tuple[int, Any, int, list[tuple]]:
    """What a refusal must leave alone: the basket as served, its version and its lines' rows."""
    response = await client.get(f"{API}/baskets/{basket_id}?include=lines")
    version = await admin_db.fetchval("SELECT version FROM basket.baskets WHERE id = $1", basket_id)
    lines = await admin_db.fetch(
        "SELECT id, variant_id, quantity, meta FROM basket.basket_lines WHERE basket_id = $1 ORDER BY seq", basket_id
    )
    return response.status, await response.json(), version, [tuple(row) for row in lines]


async def place(pool: asyncpg.Pool, basket_id: str, variant_id: str) -> None:
    """Basket's side of a placed order: the basket becomes used."""
    placed = OrderPlaced(
        order_id=f"order{uuid.uuid4().hex[:12]}",
        attempt_id=uuid.uuid4(),
        basket_id=basket_id,
        reference="2026-01-0001",
        status="payment-received",
        order_total=1200,
        currency="GBP",
        lines=[LineQuantity(variant_id=variant_id, quantity=1)],
        placed_at="2026-01-01T00:00:00Z",
    )
    await deliver(pool, on_order_placed, placed)


@pytest.fixture
async def variant(client: Any) -> dict[str, Any]:
    return await create_variant(client, price="10.00", inventory=100, max_qty=50)


# ---------------------------------------------------------------------------------------------
# PUT /basket-lines/{id}/add, and POST as its alias


async def test_put_add_is_upstreams_method_and_post_its_alias(
    client: Any, admin_db: asyncpg.Connection, variant: dict[str, Any]
) -> None:
    basket = await new_basket(client, variant["id"], 2)
    line_id = basket["lines"]["data"][0]["id"]

    async def add(method: str, body: Any) -> dict[str, Any]:
        response = await client.request(method, f"{API}/basket-lines/{line_id}/add?include=lines", json=body)
        assert response.status == 200, await response.text()
        return (await response.json())["data"]

    assert (await add("PUT", {"quantity": 3}))["lines"]["data"][0]["quantity"] == 5
    assert (await add("PUT", {}))["lines"]["data"][0]["quantity"] == 6  # one by default, as upstream
    added = await add("POST", {"quantity": 4})
    assert added["lines"]["data"][0]["quantity"] == 10 and added["sub_total"] == 100

    # The rules of every quantity change, on the resulting quantity; nothing changes.
    before = await state(client, admin_db, basket["id"])
    for body, errors in [
        ({"quantity": 41}, {"quantity": ["You cannot add more than 50 of this item."]}),
        ({"quantity": 0}, {"quantity": ["The quantity must be at least 1."]}),
        ({"quantity": "two"}, {"quantity": ["Input should be a valid integer, unable to parse string as an integer"]}),
    ]:
        response = await client.put(f"{API}/basket-lines/{line_id}/add", json=body)
        assert (response.status, await response.json()) == (422, errors)
    response = await client.put(f"{API}/basket-lines/nosuchline0000/add", json={"quantity": 1})
    assert (response.status, await response.json()) == (404, NOT_FOUND)
    assert await state(client, admin_db, basket["id"]) == before


async def test_concurrent_put_adds_lose_nothing(client: Any, variant: dict[str, Any]) -> None:
    basket = await new_basket(client, variant["id"], 1)
    line_id = basket["lines"]["data"][0]["id"]
    statuses = await asyncio.gather(
        *(
            client.request("PUT" if i % 2 else "POST", f"{API}/basket-lines/{line_id}/add", json={"quantity": 2})
            for i in range(20)
        )
    )
    assert [response.status for response in statuses] == [200] * 20
    body = await (await client.get(f"{API}/baskets/{basket['id']}?include=lines")).json()
    assert body["data"]["lines"]["data"][0]["quantity"] == 41


# ---------------------------------------------------------------------------------------------
# POST /baskets/{id}/meta


async def test_meta_sets_one_key_and_keeps_the_others(
    client: Any, admin_db: asyncpg.Connection, infra: Any, variant: dict[str, Any]
) -> None:
    basket = await new_basket(client, variant["id"], meta={"source": "app", "note": "old"})
    version = await admin_db.fetchval("SELECT version FROM basket.baskets WHERE id = $1", basket["id"])
    async with event_tap(infra, "basket.changed.v1") as tap:
        request_id = f"req-{uuid.uuid4().hex}"
        response = await client.post(
            f"{API}/baskets/{basket['id']}/meta?include=lines",
            json={"key": "gift", "value": {"wrap": True, "tags": ["red"]}},
            headers={"X-Request-Id": request_id},
        )
        assert response.status == 200, await response.text()
        changed = (await response.json())["data"]
        event = await tap.wait_for(lambda e: e["correlation_id"] == request_id)
    assert changed["meta"] == {"source": "app", "note": "old", "gift": {"wrap": True, "tags": ["red"]}}
    assert changed["lines"] == basket["lines"] and changed["total"] == basket["total"]
    assert event["payload"] == {
        "basket_id": basket["id"],
        "currency": "GBP",
        "sub_total": 1000,
        "tax_total": 200,
        "total": 1200,
        "line_count": 1,
        "discount_total": 0,
    }
    # A key already there is replaced; any JSON value but null is one.
    response = await client.post(f"{API}/baskets/{basket['id']}/meta", json={"key": "note", "value": 0})
    assert (await response.json())["data"]["meta"] == {"source": "app", "note": 0, "gift": changed["meta"]["gift"]}
    assert await admin_db.fetchval("SELECT version FROM basket.baskets WHERE id = $1", basket["id"]) == version + 2
    fetched = await (await client.get(f"{API}/baskets/{basket['id']}")).json()
    assert fetched["data"]["meta"]["note"] == 0


def _big(size: int) -> str:
    return "x" * size


META_REFUSALS: list[Any] = [
    pytest.param({"value": 1}, {"key": ["Field required"]}, id="no-key"),
    pytest.param({"key": "a"}, {"value": ["Field required"]}, id="no-value"),
    pytest.param({"key": "a", "value": None}, {"value": ["The value field is required."]}, id="null-value"),
    pytest.param({"key": "", "value": 1}, {"key": ["String should have at least 1 character"]}, id="empty-key"),
    pytest.param({"key": "k" * 256, "value": 1}, {"key": ["String should have at most 255 characters"]}, id="long-key"),
    pytest.param({"key": 7, "value": 1}, {"key": ["Input should be a valid string"]}, id="key-not-text"),
    pytest.param(
        {"key": "big", "value": _big(META_MAX_BYTES)},
        {"meta": [f"meta must be at most {META_MAX_BYTES} bytes as JSON"]},
        id="meta-too-big",
    ),
    pytest.param(
        {"key": "deep", "value": {"a": {"b": {"c": {"d": {"e": 1}}}}}},
        {"meta": ["meta may be nested at most 5 levels deep"]},
        id="meta-too-deep",
    ),
    pytest.param({"key": "a", "value": "x\x00y"}, {"value": ["Text must not contain NUL characters"]}, id="nul"),
]


@pytest.mark.parametrize(("body", "errors"), META_REFUSALS)
async def test_meta_refusals_change_nothing(
    client: Any, admin_db: asyncpg.Connection, variant: dict[str, Any], body: Any, errors: Any
) -> None:
    basket = await new_basket(client, variant["id"], meta={"kept": True})
    before = await state(client, admin_db, basket["id"])
    response = await client.post(f"{API}/baskets/{basket['id']}/meta", json=body)
    assert (response.status, await response.json()) == (422, errors)
    assert await state(client, admin_db, basket["id"]) == before


async def test_meta_of_an_unknown_or_used_basket(client: Any, pool: asyncpg.Pool, admin_db: Any, variant: Any) -> None:
    for basket_id in ("nosuchbasket0000", "Not-An-Id"):
        response = await client.post(f"{API}/baskets/{basket_id}/meta", json={"key": "a", "value": 1})
        assert (response.status, await response.json()) == (404, NOT_FOUND)
    basket = await new_basket(client, variant["id"])
    await place(pool, basket["id"], variant["id"])
    before = await state(client, admin_db, basket["id"])
    response = await client.post(f"{API}/baskets/{basket['id']}/meta", json={"key": "a", "value": 1})
    assert (response.status, await response.json()) == (403, FORBIDDEN_USED)
    assert await state(client, admin_db, basket["id"]) == before


async def test_concurrent_meta_keys_are_all_kept(client: Any, admin_db: asyncpg.Connection, variant: Any) -> None:
    """Each write merges into the meta it read under the basket's lock: none overwrites another."""
    basket = await new_basket(client, variant["id"])
    version = await admin_db.fetchval("SELECT version FROM basket.baskets WHERE id = $1", basket["id"])
    responses = await asyncio.gather(
        *(client.post(f"{API}/baskets/{basket['id']}/meta", json={"key": f"k{i}", "value": i}) for i in range(20))
    )
    assert [response.status for response in responses] == [200] * 20
    body = await (await client.get(f"{API}/baskets/{basket['id']}")).json()
    assert body["data"]["meta"] == {f"k{i}": i for i in range(20)}
    assert await admin_db.fetchval("SELECT version FROM basket.baskets WHERE id = $1", basket["id"]) == version + 20


# ---------------------------------------------------------------------------------------------
# PUT /baskets/{id}: the currency (the conversion itself: test_currencies.py)


async def test_put_basket_keeps_or_refuses_a_currency(
    client: Any, pool: asyncpg.Pool, admin_db: asyncpg.Connection, variant: dict[str, Any]
) -> None:
    basket = await new_basket(client, variant["id"], 2)
    before = await state(client, admin_db, basket["id"])
    # No body at all is how GetCandy's published client sends it: no change either.
    for body in ({"currency": "GBP"}, {"currency": "gbp"}, {}, None):
        response = await client.put(f"{API}/baskets/{basket['id']}?include=lines", json=body)
        assert response.status == 200, await response.text()
        assert (await response.json())["data"] == basket
    assert await state(client, admin_db, basket["id"]) == before  # nothing to change: not even the version

    for body, errors in [
        ({"currency": "XTS"}, {"currency": ["The selected currency is invalid."]}),  # no such currency here
        ({"currency": "POUND"}, {"currency": ["String should have at most 3 characters"]}),
    ]:
        response = await client.put(f"{API}/baskets/{basket['id']}", json=body)
        assert (response.status, await response.json()) == (422, errors)
    response = await client.put(f"{API}/baskets/nosuchbasket0000", json={"currency": "GBP"})
    assert (response.status, await response.json()) == (404, NOT_FOUND)
    assert await state(client, admin_db, basket["id"]) == before

    await place(pool, basket["id"], variant["id"])
    response = await client.put(f"{API}/baskets/{basket['id']}", json={"currency": "GBP"})
    assert (response.status, await response.json()) == (403, FORBIDDEN_USED)


# ---------------------------------------------------------------------------------------------
# DELETE /baskets/{id}


async def _lines_of(admin_db: asyncpg.Connection, basket_id: str) -> int:
    return await admin_db.fetchval("SELECT count(*) FROM basket.basket_lines WHERE basket_id = $1", basket_id)


async def _stock(admin_db: asyncpg.Connection, variant_id: str) -> tuple[int, int]:
    row = await admin_db.fetchrow("SELECT inventory, reserved FROM basket.variants WHERE id = $1", variant_id)
    return row["inventory"], row["reserved"]


async def test_delete_removes_the_basket_and_its_lines(
    client: Any, admin_db: asyncpg.Connection, infra: Any, variant: dict[str, Any]
) -> None:
    other = await create_variant(client, inventory=5)
    response = await client.post(
        f"{API}/baskets?include=lines",
        json={"variants": [{"id": variant["id"], "quantity": 3}, {"id": other["id"], "quantity": 1}]},
    )
    basket = (await response.json())["data"]
    stock = await _stock(admin_db, variant["id"])
    async with event_tap(infra, "basket.changed.v1") as tap:
        request_id = f"req-{uuid.uuid4().hex}"
        response = await client.delete(f"{API}/baskets/{basket['id']}", headers={"X-Request-Id": request_id})
        assert response.status == 200, await response.text()
        assert await response.json() == {"success": {"http_code": 200, "message": None}}
        event = await tap.wait_for(lambda e: e["correlation_id"] == request_id)
    # Announced as emptied.
    assert event["payload"] == {
        "basket_id": basket["id"],
        "currency": "GBP",
        "sub_total": 0,
        "tax_total": 0,
        "total": 0,
        "line_count": 0,
        "discount_total": 0,
    }
    response = await client.get(f"{API}/baskets/{basket['id']}")
    assert (response.status, await response.json()) == (404, NOT_FOUND)
    assert await _lines_of(admin_db, basket["id"]) == 0
    for line in basket["lines"]["data"]:
        response = await client.put(f"{API}/basket-lines/{line['id']}", json={"quantity": 1})
        assert response.status == 404
    # A basket holds no stock: deleting it releases nothing.
    assert await _stock(admin_db, variant["id"]) == stock
    # Gone: a second delete, or one of a basket that never was, is a 404.
    for basket_id in (basket["id"], "nosuchbasket0000", "Not-An-Id"):
        response = await client.delete(f"{API}/baskets/{basket_id}")
        assert (response.status, await response.json()) == (404, NOT_FOUND)
    # Its id names nothing any more: adding to it is the body's 422, not a new basket.
    response = await client.post(
        f"{API}/basket-lines", json={"basket_id": basket["id"], "variants": [{"id": variant["id"], "quantity": 1}]}
    )
    assert (response.status, await response.json()) == (422, {"basket_id": ["The selected basket id is invalid."]})


async def test_a_basket_with_a_placed_order_cannot_be_deleted(
    client: Any, pool: asyncpg.Pool, admin_db: asyncpg.Connection, variant: dict[str, Any]
) -> None:
    basket = await new_basket(client, variant["id"], 2)
    await place(pool, basket["id"], variant["id"])
    before = await state(client, admin_db, basket["id"])
    response = await client.delete(f"{API}/baskets/{basket['id']}")
    assert (response.status, await response.json()) == (403, FORBIDDEN_USED)
    assert await state(client, admin_db, basket["id"]) == before
    assert before[0] == 200 and await _lines_of(admin_db, basket["id"]) == 1


async def test_a_basket_whose_checkout_holds_stock_cannot_be_deleted_until_it_ends(
    client: Any, pool: asyncpg.Pool, admin_db: asyncpg.Connection, variant: dict[str, Any]
) -> None:
    basket = await new_basket(client, variant["id"], 2)
    inventory, reserved = await _stock(admin_db, variant["id"])
    order_id, attempt_id = f"order{uuid.uuid4().hex[:12]}", uuid.uuid4()
    lines = [LineQuantity(variant_id=variant["id"], quantity=2)]
    requested = OrderStockRequested(order_id=order_id, attempt_id=attempt_id, basket_id=basket["id"], lines=lines)
    await deliver(pool, on_order_stock_requested, requested, ttl_seconds=900)
    assert await _stock(admin_db, variant["id"]) == (inventory, reserved + 2)

    before = await state(client, admin_db, basket["id"])
    response = await client.delete(f"{API}/baskets/{basket['id']}")
    assert (response.status, await response.json()) == (409, {"error": {"http_code": 409, "message": MSG_IN_FLIGHT}})
    assert await state(client, admin_db, basket["id"]) == before

    # The checkout fails and gives its stock back: now the basket may go, and releases nothing more.
    failed = OrderFailed(order_id=order_id, attempt_id=attempt_id, basket_id=basket["id"], reason="declined")
    await deliver(pool, on_order_failed, failed)
    assert await _stock(admin_db, variant["id"]) == (inventory, reserved)
    response = await client.delete(f"{API}/baskets/{basket['id']}")
    assert response.status == 200, await response.text()
    assert await _stock(admin_db, variant["id"]) == (inventory, reserved)
    status = await admin_db.fetchval(
        "SELECT status FROM basket.stock_reservations WHERE order_id = $1 AND attempt_id = $2", order_id, attempt_id
    )
    assert status == "released"  # the order's reservation stays, as the order left it


async def test_concurrent_deletes_delete_once(client: Any, infra: Any, variant: dict[str, Any]) -> None:
    basket = await new_basket(client, variant["id"])
    async with event_tap(infra, "basket.changed.v1") as tap:
        request_ids = [f"req-{uuid.uuid4().hex}" for _ in range(10)]
        responses = await asyncio.gather(
            *(client.delete(f"{API}/baskets/{basket['id']}", headers={"X-Request-Id": rid}) for rid in request_ids)
        )
        assert sorted(response.status for response in responses) == [200] + [404] * 9
        winner = next(rid for rid, response in zip(request_ids, responses, strict=True) if response.status == 200)
        await tap.wait_for(lambda e: e["correlation_id"] == winner)
        await asyncio.sleep(0.5)
        deleted = [e for e in tap.messages if e["correlation_id"] in request_ids]
    assert len(deleted) == 1


async def test_a_delete_racing_the_placement_ends_one_way_or_the_other(
    client: Any, pool: asyncpg.Pool, admin_db: asyncpg.Connection, variant: dict[str, Any]
) -> None:
    """The delete and the placed order's event both take the basket's row lock: either the basket
    is gone (and the placement marks nothing), or it is used and kept whole (and the delete is 403)."""
    outcomes = set()
    for _ in range(6):
        basket = await new_basket(client, variant["id"])
        response, _ = await asyncio.gather(
            client.delete(f"{API}/baskets/{basket['id']}"), place(pool, basket["id"], variant["id"])
        )
        row = await admin_db.fetchrow("SELECT order_id FROM basket.baskets WHERE id = $1", basket["id"])
        if response.status == 200:
            assert row is None and await _lines_of(admin_db, basket["id"]) == 0
        else:
            assert (response.status, await response.json()) == (403, FORBIDDEN_USED)
            assert row["order_id"] is not None and await _lines_of(admin_db, basket["id"]) == 1
        outcomes.add(response.status)
    assert outcomes <= {200, 403}


async def test_adds_racing_a_delete_leave_no_line_behind(
    client: Any, admin_db: asyncpg.Connection, variant: dict[str, Any]
) -> None:
    basket = await new_basket(client, variant["id"])
    add = {"basket_id": basket["id"], "variants": [{"id": variant["id"], "quantity": 1}]}
    responses = await asyncio.gather(
        *(client.post(f"{API}/basket-lines", json=add) for _ in range(5)),
        client.delete(f"{API}/baskets/{basket['id']}"),
        *(client.post(f"{API}/basket-lines", json=add) for _ in range(5)),
    )
    assert responses[5].status == 200
    assert {response.status for response in responses[:5] + responses[6:]} <= {200, 422}
    assert await admin_db.fetchval("SELECT count(*) FROM basket.baskets WHERE id = $1", basket["id"]) == 0
    assert await _lines_of(admin_db, basket["id"]) == 0


# ---------------------------------------------------------------------------------------------
# Through the gateway


@pytest.fixture
async def http(stack: Any) -> Any:
    async with aiohttp.ClientSession(base_url=stack.gateway + "/") as session:
        yield session


async def test_basket_management_through_the_gateway(http: aiohttp.ClientSession) -> None:
    admin = {"Authorization": f"Bearer {mint_token(GatewaySettings())}"}
    product = {"name": "Managed", "variants": [{"sku": sku("BM"), "price": "4.00", "inventory": 20}]}
    response = await http.post("products", json=product, headers=admin)
    assert response.status == 200, await response.text()
    variant = (await response.json())["data"]["variants"]["data"][0]
    response = await http.post("baskets?include=lines", json={"variants": [{"id": variant["id"], "quantity": 1}]})
    basket = (await response.json())["data"]
    line_id = basket["lines"]["data"][0]["id"]

    response = await http.put(f"basket-lines/{line_id}/add?include=lines", json={"quantity": 2})
    assert response.status == 200, await response.text()
    assert (await response.json())["data"]["lines"]["data"][0]["quantity"] == 3
    response = await http.post(f"basket-lines/{line_id}/add?include=lines", json={"quantity": 1})
    assert (await response.json())["data"]["lines"]["data"][0]["quantity"] == 4

    response = await http.post(f"baskets/{basket['id']}/meta", json={"key": "gift", "value": "yes"})
    assert response.status == 200, await response.text()
    assert (await response.json())["data"]["meta"] == {"gift": "yes"}
    response = await http.post(f"baskets/{basket['id']}/meta", json={"key": "gift"})
    assert (response.status, await response.json()) == (422, {"value": ["Field required"]})

    response = await http.put(f"baskets/{basket['id']}", json={"currency": "GBP"})
    assert response.status == 200 and (await response.json())["data"]["currency"] == "GBP"
    # The demo data's euro: GetCandy's client sends the currency header with every call.
    response = await http.put(f"baskets/{basket['id']}", json={"currency": "EUR"}, headers={"X-CANDY-CURRENCY": "EUR"})
    assert (response.status, (await response.json())["data"]["currency"]) == (200, "EUR")
    response = await http.put(f"baskets/{basket['id']}", json={"currency": "XTS"})
    assert response.status == 422

    response = await http.delete(f"baskets/{basket['id']}")
    assert (response.status, await response.json()) == (200, {"success": {"http_code": 200, "message": None}})
    response = await http.get(f"baskets/{basket['id']}")
    assert (response.status, await response.json()) == (404, NOT_FOUND)
