"""Hostile input, through the gateway and straight to a service: every answer a 4xx in the GetCandy
shape (or a 2xx where the input is in fact acceptable), never a 5xx, every status one the OpenAPI
document declares for its operation, and nothing changed in any schema.

Every operation of the document gets every body case below; GET operations get hostile query
strings as well (their bodies are ignored, so a 2xx is right for those). Path ids are real where
one exists (a seeded product, a basket with a line, a placed order, its transaction and shipment, a
country), except for the operations that take no body and act on the id alone (delete a line or a
basket, expire an order, void a payment): any acceptable body there would rightly act, so they get
an unknown id.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import orjson
import pytest

from bench.shopper import Shopper
from gateway.auth import mint_token
from gateway.routes import Route, load_document, load_routes
from gateway.settings import GatewaySettings
from shared.http import MAX_JSON_DEPTH
from shared.operations import PREFIX
from tests.support import Stack

DOCUMENT = orjson.loads(load_document())
SCHEMAS = DOCUMENT["components"]["schemas"]
ADMIN = {"Authorization": f"Bearer {mint_token(GatewaySettings())}"}
UNKNOWN_ID = "zzzzzzzzzzzzzzzzzzzzzzzz"
GATEWAY_BODY_LIMIT = GatewaySettings().max_body_bytes
# Operations that take no body and act on their path id alone.
BODILESS_WRITES = {
    ("DELETE", "/basket-lines/{id}"),
    ("DELETE", "/baskets/{id}"),
    ("DELETE", "/baskets/{id}/discounts"),
    ("POST", "/orders/{id}/expire"),
    ("POST", "/payments/{id}/void"),
}
# Tables whose contents move by themselves (events in flight), not by a request.
TRANSIENT_TABLES = {"outbox", "inbox", "schema_migrations"}


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    query: str = ""


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    return b'{"a":' * depth + leaf + b"}" * depth


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return SCHEMAS[ref.rsplit("/", 1)[1]] if ref else schema


def _types(schema: dict[str, Any]) -> set[str]:
    schema = _resolve(schema)
    found = set()
    if isinstance(schema.get("type"), str):
        found.add(schema["type"])
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        found |= _types(option)
    if "number" in found:
        found.add("integer")
    return found


# A value of each JSON type, and its type: the first one a property does not accept is wrong for it.
WRONG_VALUES = ([["x"]], "array"), ({"x": {}}, "object"), ("text", "string"), (12345, "integer"), (True, "boolean")


def wrong_value(schema: dict[str, Any]) -> Any:
    accepted = _types(schema)
    return next((value for value, kind in WRONG_VALUES if kind not in accepted), [["x"]])


def properties(route: Route) -> dict[str, Any]:
    op = DOCUMENT["paths"][route.path][route.method.lower()]
    body = op.get("requestBody")
    if body is None:
        return {}
    return _resolve(body["content"]["application/json"]["schema"]).get("properties", {})


def body_cases(route: Route) -> list[Case]:
    props = properties(route) or {"quantity": {"type": "integer"}}
    wrong = {name: wrong_value(schema) for name, schema in props.items()}
    first = next(iter(wrong))
    as_json = {"Content-Type": "application/json"}.items()
    huge = "x" * 200_000
    return [
        Case("malformed-json", b'{"a": 1,', tuple(as_json)),
        Case("broken-gzip", b'{"a": 1} is not gzip', (*as_json, ("Content-Encoding", "gzip"))),
        Case("truncated-gzip", gzip.compress(b'{"a": 1}' * 50)[:40], (*as_json, ("Content-Encoding", "gzip"))),
        Case("unknown-encoding", b'{"a": 1}', (*as_json, ("Content-Encoding", "br2"))),
        Case("encoding-list", gzip.compress(b"{}"), (*as_json, ("Content-Encoding", "gzip, br"))),
        Case("nested-10k", nested(10_000), tuple(as_json)),
        Case("nested-300-keyed", nested(300), (*as_json, ("Idempotency-Key", str(uuid.uuid4())))),
        Case("nested-1000-nul", nested(1000, b'"\\u0000"'), tuple(as_json)),
        Case("nested-past-limit", nested(MAX_JSON_DEPTH + 1), tuple(as_json)),
        Case("number-1e400", raw_object(props, b"1e400"), tuple(as_json)),
        Case("number-2**80", raw_object(props, str(2**80).encode()), tuple(as_json)),
        Case("number-1e300", raw_object(props, b"-1e300"), tuple(as_json)),
        Case("huge-strings", orjson.dumps(dict.fromkeys(props, huge)), tuple(as_json)),
        Case("over-the-limit", orjson.dumps({first: "x" * (GATEWAY_BODY_LIMIT * 4)}), tuple(as_json)),
        Case("nul", orjson.dumps({name: "a\x00b" for name in props}), tuple(as_json)),
        Case("nul-key", b'{"a\\u0000": 1}', tuple(as_json)),
        Case("invalid-utf8", b'{"' + first.encode() + b'": "\xff\xfe"}', tuple(as_json)),
        Case("lone-surrogate", b'{"' + first.encode() + b'": "\\ud800"}', tuple(as_json)),
        # The last value wins, and here it is the wrong one: a 422 proves which one was taken.
        Case("duplicate-keys", duplicated(wrong), tuple(as_json)),
        Case("array-body", b"[{}]", tuple(as_json)),
        Case("string-body", b'"text"', tuple(as_json)),
        Case("wrong-types", orjson.dumps(wrong), tuple(as_json)),
    ]


def raw_object(props: dict[str, Any], literal: bytes) -> bytes:
    """Every property set to a JSON literal that Python's own encoder would not write."""
    return b"{" + b",".join(orjson.dumps(name) + b":" + literal for name in props) + b"}"


def duplicated(wrong: dict[str, Any]) -> bytes:
    """Every property twice: first a plausible value, then the wrong one."""
    members = (orjson.dumps(k) + b': "ok",' + orjson.dumps(k) + b":" + orjson.dumps(v) for k, v in wrong.items())
    return b"{" + b",".join(members) + b"}"


QUERY_CASES = [
    Case("query-1e400", query="page=1e400&per_page=1e400"),
    Case("query-2**80", query=f"page={2**80}&per_page={2**80}"),
    Case("query-wrong-type", query="page=abc&per_page=%5B%5D&placed=maybe&from=yesterday"),
    Case("query-nul", query="status=a%00b&include=%00&order_id=%00"),
    Case("query-invalid-utf8", query="status=%FF%FE&include=%C3%28"),
    Case("query-long", query="include=" + "x," * 1500),
]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # A fresh connection per request: a body that cannot be decoded closes its connection.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=16)) as session:
        yield session


async def real_ids(session: aiohttp.ClientSession, stack: Stack) -> dict[str, str]:
    """Path prefix -> an id that exists: a product and variant, a basket with a line, a placed order
    with its transaction and shipment, and a shipping zone, method and price."""
    shopper = Shopper(session, stack.gateway)
    sku = f"HOSTILE-{uuid.uuid4().hex[:10]}"
    variant_in = {"sku": sku, "price": "10.00", "inventory": 10, "weight_grams": 500}
    product = await _get(
        session, f"{stack.gateway}/products?include=variants", "POST", {"name": sku, "variants": [variant_in]}
    )
    variant = product["variants"]["data"][0]
    placed = await shopper.checkout([(variant["id"], 1)], payment_token="fake-valid-nonce")
    assert placed.placed, placed.error
    basket = await _get(
        session, f"{stack.gateway}/baskets", "POST", {"variants": [{"id": variant["id"], "quantity": 1}]}
    )
    basket = await _get(session, f"{stack.gateway}/baskets/{basket['id']}?include=lines")
    order = await _get(session, f"{stack.gateway}/orders/{placed.order_id}?include=transactions")
    # Its invoice is issued on its first request: issued now, so that later reads change nothing.
    await _get(session, f"{stack.gateway}/orders/{placed.order_id}/invoice")
    shipments = await _eventually(lambda: _list(session, f"{stack.gateway}/shipments?order_id={placed.order_id}"))
    ids = {
        "/products/variants/": variant["id"],
        "/products/": product["id"],
        "/baskets/": basket["id"],
        "/basket-lines/": basket["lines"]["data"][0]["id"],
        "/orders/": placed.order_id,
        "/payments/": order["transactions"]["data"][0]["id"],
        "/shipments/": shipments[0]["id"],
    }
    for kind in ("zones", "methods", "prices"):
        ids[f"/shipping/{kind}/"] = (await _list(session, f"{stack.gateway}/shipping/{kind}"))[0]["id"]
    ids["/countries/"] = (await _list(session, f"{stack.gateway}/countries?per_page=1"))[0]["id"]
    return ids


async def _get(session: aiohttp.ClientSession, url: str, method: str = "GET", body: Any = None) -> dict[str, Any]:
    async with session.request(method, url, json=body, headers=ADMIN) as response:
        assert response.status < 300, await response.text()
        return (await response.json())["data"]


async def _list(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with session.get(url, headers=ADMIN) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["data"]


async def _eventually(check: Callable, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)
    return result


async def fingerprint(conn: asyncpg.Connection) -> dict[str, str]:
    """Every table of every service's schema: its rows and a digest of their contents, so that an
    update shows as well as an insert or a delete."""
    tables = await conn.fetch(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('basket', 'orders', 'shipping', 'payments', 'customers') AND table_type = 'BASE TABLE'"
    )
    result = {}
    for row in tables:
        if row["table_name"] in TRANSIENT_TABLES:
            continue
        name = f'"{row["table_schema"]}"."{row["table_name"]}"'
        result[name] = await conn.fetchval(
            f"SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {name} t"
        )
    return result


async def settled(conn: asyncpg.Connection) -> dict[str, str]:
    """The fingerprint once the events of earlier requests have been consumed (two equal reads)."""
    previous = await fingerprint(conn)
    for _ in range(50):
        await asyncio.sleep(0.3)
        current = await fingerprint(conn)
        if current == previous:
            return current
        previous = current
    raise AssertionError("the database never settled")


def is_getcandy_error(status: int, body: Any) -> bool:
    if status == 422 and isinstance(body, dict) and "error" not in body:
        return bool(body) and all(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in body.values())
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and error.get("http_code") == status and isinstance(error.get("message"), str)


def declared(route: Route) -> set[int]:
    return {int(code) for code in DOCUMENT["paths"][route.path][route.method.lower()]["responses"]}


def concrete_path(route: Route, ids: dict[str, str]) -> str:
    if "{id}" not in route.path:
        return route.path
    real = next((v for prefix, v in ids.items() if route.path.startswith(prefix)), UNKNOWN_ID)
    return route.path.replace("{id}", UNKNOWN_ID if (route.method, route.path) in BODILESS_WRITES else real)


async def send(session: aiohttp.ClientSession, method: str, url: str, case: Case, admin: bool) -> tuple[int, Any]:
    headers = dict(case.headers) | (ADMIN if admin else {})
    if case.query:
        url = f"{url}{'&' if '?' in url else '?'}{case.query}"
    data = None if case.body is None else io.BytesIO(case.body)  # aiohttp warns on large raw bytes
    async with session.request(method, url, data=data, headers=headers) as response:
        raw = await response.read()
    try:
        return response.status, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return response.status, raw[:200]


async def test_hostile_input_gets_a_declared_4xx_and_changes_nothing(stack: Stack, session, admin_db):
    started = time.monotonic()
    ids = await real_ids(session, stack)
    before = await settled(admin_db)
    failures: list[str] = []
    seen: set[tuple[str, int]] = set()
    semaphore = asyncio.Semaphore(16)

    async def attempt(route: Route, case: Case, base: str) -> None:
        path = concrete_path(route, ids)
        async with semaphore:
            try:
                status, body = await send(session, route.method, base + path, case, route.admin)
            except aiohttp.ClientError as exc:
                failures.append(f"{route.method} {path} [{case.name}] via {base}: {exc!r}")
                return
        seen.add((case.name, status))
        acceptable = 200 <= status < 300 and route.method == "GET"
        problem = None
        if status >= 500 or not (400 <= status < 500 or acceptable):
            problem = "not a 4xx"
        elif status not in declared(route):
            problem = "not declared"
        elif status >= 400 and not is_getcandy_error(status, body):
            problem = "not the GetCandy shape"
        if problem:
            failures.append(f"{route.method} {path} [{case.name}] via {base} -> {status} {problem}: {body!r:.300}")

    jobs = []
    for route in load_routes():
        cases = body_cases(route) + (QUERY_CASES if route.method == "GET" else [])
        jobs += [attempt(route, case, stack.gateway) for case in cases]
    # Straight to one service, past the gateway (which neither decodes nor re-checks bodies).
    basket_routes = [r for r in load_routes() if r.service == "basket" and not r.admin and r.method != "GET"]
    for route in basket_routes:
        jobs += [attempt(route, case, stack.url("basket") + PREFIX) for case in body_cases(route)]
    await asyncio.gather(*jobs)

    assert not failures, f"{len(failures)} failures:\n" + "\n".join(sorted(failures)[:40])
    assert await settled(admin_db) == before
    assert time.monotonic() - started < 60


async def test_a_body_that_trickles_in_is_a_408_within_the_route_timeout(stack: Stack):
    """The gateway's body timeout is the route's own (5 s by default): a client sending its body
    slowly holds a connection no longer than that, and gets a 408 in the GetCandy shape."""
    route = next(r for r in load_routes() if (r.method, r.path) == ("POST", "/baskets"))
    timeout = route.timeout or GatewaySettings().default_timeout
    url = urlsplit(stack.gateway)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        body = b'{"variants": []}'
        writer.write(
            f"POST {url.path}/baskets HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        started = time.monotonic()
        for byte in body[:4]:  # a byte a second, never the whole body
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1.0)
        # The answer comes while the connection stays open (the server still drains the body it
        # was promised): read exactly the head and its Content-Length.
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout + 5)
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        payload = await asyncio.wait_for(reader.readexactly(length), 5)
    finally:
        writer.close()
    assert head.split(b" ")[1] == b"408", head
    assert orjson.loads(payload)["error"]["http_code"] == 408
    assert timeout <= time.monotonic() - started < timeout + 3
    assert 408 in declared(route)
