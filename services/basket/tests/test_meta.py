"""A basket's and a line's `meta` are bounded (shared.http.Meta: 8 KiB as JSON, 50 keys per
object, 5 levels): past a limit the request is a 422 in the GetCandy shape and changes nothing
(issue 17)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from services.basket.tests.testkit import API, create_variant
from shared.http import META_MAX_BYTES, META_MAX_DEPTH, META_MAX_KEYS

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

TOO_BIG = {"note": "x" * META_MAX_BYTES}
TOO_MANY_KEYS = {"inner": {f"k{i}": i for i in range(META_MAX_KEYS + 1)}}
TOO_DEEP: dict[str, Any] = {}
for _ in range(META_MAX_DEPTH):
    TOO_DEEP = {"a": TOO_DEEP}

REFUSED = [
    pytest.param(TOO_BIG, f"meta must be at most {META_MAX_BYTES} bytes as JSON", id="size"),
    pytest.param(TOO_MANY_KEYS, f"meta objects may have at most {META_MAX_KEYS} keys", id="keys"),
    pytest.param(TOO_DEEP, f"meta may be nested at most {META_MAX_DEPTH} levels deep", id="depth"),
]


async def baskets(admin_db: asyncpg.Connection) -> tuple[int, int, int]:
    row = await admin_db.fetchrow(
        "SELECT (SELECT count(*) FROM basket.baskets) AS baskets, "
        "(SELECT count(*) FROM basket.basket_lines) AS lines, (SELECT count(*) FROM basket.outbox) AS outbox"
    )
    return row["baskets"], row["lines"], row["outbox"]


@pytest.mark.parametrize(("meta", "message"), REFUSED)
async def test_a_new_basket_with_meta_past_a_limit_is_422_and_changes_nothing(
    client: Any, admin_db: asyncpg.Connection, meta: dict[str, Any], message: str
) -> None:
    variant = await create_variant(client)
    before = await baskets(admin_db)

    response = await client.post(f"{API}/baskets", json={"meta": meta})
    assert response.status == 422
    assert await response.json() == {"meta": [message]}

    response = await client.post(
        f"{API}/baskets", json={"variants": [{"id": variant["id"], "quantity": 1, "meta": meta}]}
    )
    assert response.status == 422
    assert await response.json() == {"variants.0.meta": [message]}
    assert await baskets(admin_db) == before


@pytest.mark.parametrize(("meta", "message"), REFUSED)
async def test_meta_past_a_limit_on_an_existing_basket_is_422_and_changes_nothing(
    client: Any, admin_db: asyncpg.Connection, meta: dict[str, Any], message: str
) -> None:
    variant = await create_variant(client)
    response = await client.post(f"{API}/basket-lines", json={"variants": [{"id": variant["id"], "quantity": 1}]})
    basket_id = (await response.json())["data"]["id"]
    url = f"{API}/baskets/{basket_id}?include=lines"
    seen = await (await client.get(url)).json()
    before = await baskets(admin_db)

    for body, path in [
        ({"basket_id": basket_id, "variants": [{"id": variant["id"], "quantity": 1}], "meta": meta}, "meta"),
        ({"basket_id": basket_id, "variants": [{"id": variant["id"], "quantity": 1, "meta": meta}]}, "variants.0.meta"),
    ]:
        for route in ("baskets", "basket-lines"):  # replace every line / add lines
            response = await client.post(f"{API}/{route}", json=body)
            assert response.status == 422, route
            assert await response.json() == {path: [message]}

    assert await (await client.get(url)).json() == seen
    assert await baskets(admin_db) == before


async def test_meta_at_its_limits_is_kept_as_sent(client: Any) -> None:
    variant = await create_variant(client)
    at_the_limits = {
        "keys": {f"k{i}": i for i in range(META_MAX_KEYS)},
        "deep": {"b": {"c": {"d": {"e": "the fifth level"}}}},
    }
    line_meta = {"note": "x" * (META_MAX_BYTES - len('{"note":""}'))}  # exactly the size limit
    response = await client.post(
        f"{API}/baskets?include=lines",
        json={"meta": at_the_limits, "variants": [{"id": variant["id"], "quantity": 1, "meta": line_meta}]},
    )
    assert response.status == 200, await response.text()
    data = (await response.json())["data"]
    assert data["meta"] == at_the_limits
    assert data["lines"]["data"][0]["meta"] == line_meta


async def test_an_empty_list_is_taken_as_an_empty_object(client: Any) -> None:
    response = await client.post(f"{API}/baskets", json={"meta": []})
    assert response.status == 200, await response.text()
    assert (await response.json())["data"]["meta"] == {}
