"""An order's `meta` (taken by `POST /orders/process`) is bounded (shared.http.Meta: 8 KiB as
JSON, 50 keys per object, 5 levels): past a limit the request is a 422 in the GetCandy shape, no
checkout attempt starts and the order is unchanged (issue 17)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from services.orders.tests.conftest import SCHEMA
from services.orders.tests.testkit import Store, line
from shared.http import META_MAX_BYTES, META_MAX_DEPTH, META_MAX_KEYS

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

URL = "/api/v1/orders"

TOO_DEEP: dict[str, Any] = {}
for _ in range(META_MAX_DEPTH):
    TOO_DEEP = {"a": TOO_DEEP}


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        pytest.param({"note": "x" * META_MAX_BYTES}, f"meta must be at most {META_MAX_BYTES} bytes as JSON", id="size"),
        pytest.param(
            {f"k{i}": i for i in range(META_MAX_KEYS + 1)},
            f"meta objects may have at most {META_MAX_KEYS} keys",
            id="keys",
        ),
        pytest.param(TOO_DEEP, f"meta may be nested at most {META_MAX_DEPTH} levels deep", id="depth"),
        pytest.param([1, 2], "Input should be a valid dictionary", id="a-list"),
    ],
)
async def test_processing_with_meta_past_a_limit_is_422_and_changes_nothing(
    client: Any, store: Store, admin_db: asyncpg.Connection, meta: Any, message: str
) -> None:
    response = await client.post(URL, json={"basket_id": store.put([line("A", 1, 1000)])})
    order_id = (await response.json())["data"]["id"]
    seen = await (await client.get(f"{URL}/{order_id}")).json()

    response = await client.post(
        f"{URL}/process", json={"order_id": order_id, "payment_type_id": "card", "payment_token": "t", "meta": meta}
    )
    assert response.status == 422
    assert await response.json() == {"meta": [message]}

    assert await (await client.get(f"{URL}/{order_id}")).json() == seen
    assert seen["data"]["status"] == "awaiting-payment"
    attempts = await admin_db.fetchval(f"SELECT count(*) FROM {SCHEMA}.checkout_attempts WHERE order_id = $1", order_id)
    assert attempts == 0
