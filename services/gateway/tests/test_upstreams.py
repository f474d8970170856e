"""Several instances per service: round-robin, failover on refused connections, the down penalty,
and the one retry of a request safe to repeat whose connection was lost before any answer."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator

import pydantic
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.settings import GatewaySettings
from gateway.upstreams import UpstreamPool
from shared import http
from shared.metrics import REGISTRY

SERVICES = ("basket", "orders", "shipping", "payments")


def counted(name: str) -> float:
    """A counter of this process (`commerce_<name>`), summed over its upstream services."""
    return sum(REGISTRY.get_sample_value(f"commerce_{name}", {"upstream": s}) or 0 for s in SERVICES)


class Instance:
    """A tiny upstream instance that names itself in its answers and records what it received.

    `drop` next requests lose their connection before any answer; `drop_reused` drops every
    request that arrives on a connection that already carried one (a pooled keep-alive connection
    closed under a new request, as by an instance shutting down); `cut` next requests get their
    status line and headers, then lose the connection in the middle of the body.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.hits: list[tuple[str, str]] = []
        self.drop = 0
        self.drop_reused = False
        self.cut = 0
        self._seen: set[object] = set()  # the transports themselves: an id could be reused

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            assert request.transport is not None
            self.hits.append((request.method, request.path))
            reused = request.transport in self._seen
            self._seen.add(request.transport)
            if self.drop > 0 or (self.drop_reused and reused):
                self.drop = max(0, self.drop - 1)
                request.transport.close()
                return web.Response()
            if self.cut > 0:
                self.cut -= 1
                response = web.StreamResponse(headers={"Content-Length": "1000"})
                await response.prepare(request)
                await response.write(b"partial")
                request.transport.close()
                return response
            if "sleep" in request.query:
                await asyncio.sleep(float(request.query["sleep"]))
            return http.json_response({"instance": self.name})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


async def gateway_for(aiohttp_client, urls: str, **overrides):
    settings = GatewaySettings(**({f"{s}_url": urls for s in SERVICES} | {"log_json": False} | overrides))
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def pair(aiohttp_server) -> tuple[Instance, Instance, str]:
    a, b = Instance("a"), Instance("b")
    server_a = await aiohttp_server(a.app())
    server_b = await aiohttp_server(b.app())
    return a, b, f"{base(server_a)},{base(server_b)}"


def base(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


async def dead_port(aiohttp_server) -> int:
    """A loopback port nothing listens on (a server started, then closed)."""
    server = await aiohttp_server(web.Application())
    port = server.port
    await server.close()
    return port


async def instance_of(response) -> str:
    assert response.status == 200, await response.text()
    return (await response.json())["instance"]


# ---------------------------------------------------------------------------------------------
# Settings and the pool on their own


def test_a_service_url_may_list_several_instances(monkeypatch):
    settings = GatewaySettings(payments_url=" http://10.0.0.5:8004/ ,http://10.0.0.6:8004")
    assert settings.upstreams("payments") == ("http://10.0.0.5:8004", "http://10.0.0.6:8004")
    assert settings.upstreams("basket") == ("http://127.0.0.1:8001",)
    monkeypatch.setenv("GATEWAY_ORDERS_URL", "http://orders-0:8002,http://orders-1:8002,http://orders-2:8002")
    assert GatewaySettings().upstreams("orders") == (
        "http://orders-0:8002",
        "http://orders-1:8002",
        "http://orders-2:8002",
    )
    monkeypatch.setenv("GATEWAY_ORDERS_URL", "http://orders:8002/")
    assert GatewaySettings().upstreams("orders") == ("http://orders:8002",)


@pytest.mark.parametrize("value", ["", "http://a:1,", "a:1", "http://a:1,,http://b:2", "ftp://a:1"])
def test_a_malformed_instance_list_is_refused(value):
    with pytest.raises(pydantic.ValidationError):
        GatewaySettings(shipping_url=value)


def test_the_pool_takes_turns_over_instances_up_and_tries_those_down_last():
    now = 100.0
    pool = UpstreamPool(
        "orders", ("http://a", "http://b", "http://c"), 5.0, lambda: now, max_in_flight=10, admission_wait=0.1
    )
    order = lambda: [i.url[-1] for i in pool.candidates()]  # noqa: E731
    assert [order() for _ in range(4)] == [list("abc"), list("bca"), list("cab"), list("abc")]

    a, b, _ = pool.instances
    pool.mark_down(b)
    now = 101.0
    pool.mark_down(a)  # down until 106, b until 105
    assert order() == list("cba")  # turn 4 starts at b: c is the only one up; then b, whose penalty ends first
    assert order() == list("cba")
    now = 105.0  # b's penalty is over
    assert order() == list("bca")  # turn 6 starts at a, still down until 106
    assert order() == list("bca")
    pool.mark_up(a)  # it answered
    assert order() == list("cab")


# ---------------------------------------------------------------------------------------------
# Round-robin and failover


async def test_requests_take_turns_across_instances(aiohttp_client, pair):
    a, b, urls = pair
    client = await gateway_for(aiohttp_client, urls)
    seen = [await instance_of(await client.get("/api/v1/payments/types")) for _ in range(6)]
    assert seen == ["a", "b", "a", "b", "a", "b"]
    assert len(a.hits) == len(b.hits) == 3


async def test_a_refused_connection_fails_over_within_the_request_and_marks_the_instance_down(
    aiohttp_client, aiohttp_server
):
    b = Instance("b")
    server_b = await aiohttp_server(b.app())
    dead = f"http://127.0.0.1:{await dead_port(aiohttp_server)}"
    client = await gateway_for(aiohttp_client, f"{dead},{base(server_b)}", upstream_down_for=60)
    before = counted("upstream_unreachable_total")

    seen = [await instance_of(await client.get("/api/v1/payments/types")) for _ in range(6)]

    assert seen == ["b"] * 6
    assert len(b.hits) == 6
    # Tried once, then skipped for the penalty: later requests never wait on it.
    assert counted("upstream_unreachable_total") - before == 1


async def test_an_instance_down_is_tried_again_after_its_penalty(aiohttp_client, aiohttp_server):
    b = Instance("b")
    server_b = await aiohttp_server(b.app())
    port = await dead_port(aiohttp_server)
    client = await gateway_for(aiohttp_client, f"http://127.0.0.1:{port},{base(server_b)}", upstream_down_for=0.2)
    assert await instance_of(await client.get("/api/v1/orders/x1")) == "b"

    a = Instance("a")
    await aiohttp_server(a.app(), port=port)  # the instance is back (restarted)
    await asyncio.sleep(0.3)
    seen = {await instance_of(await client.get("/api/v1/orders/x1")) for _ in range(4)}
    assert seen == {"a", "b"}
    assert len(a.hits) == 2


async def test_every_instance_unreachable_is_503_in_getcandy_shape(aiohttp_client, aiohttp_server):
    ports = [await dead_port(aiohttp_server) for _ in range(2)]
    client = await gateway_for(aiohttp_client, ",".join(f"http://127.0.0.1:{p}" for p in ports), upstream_down_for=60)
    before = counted("upstream_unreachable_total")

    response = await client.get("/api/v1/payments/types")

    assert response.status == 503
    assert await response.json() == {"error": {"http_code": 503, "message": "The payments service is unavailable"}}
    assert counted("upstream_unreachable_total") - before == 2  # each tried once

    # Both are marked down; one comes back within the penalty: it is found at once, no stale 503.
    a = Instance("a")
    await aiohttp_server(a.app(), port=ports[1])
    assert await instance_of(await client.get("/api/v1/payments/types")) == "a"


# ---------------------------------------------------------------------------------------------
# A connection lost before any answer: retried once, only when the request is safe to repeat


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/api/v1/payments/types", {}),
        ("PUT", "/api/v1/orders/x1/contact", {}),
        ("DELETE", "/api/v1/basket-lines/x1", {}),
        ("POST", "/api/v1/baskets", {"Idempotency-Key": "k-1"}),
        ("POST", "/api/v1/orders/process", {}),
    ],
    ids=["GET", "PUT", "DELETE", "POST-with-key", "POST-orders-process"],
)
async def test_a_request_safe_to_repeat_is_retried_once_on_the_other_instance(
    aiohttp_client, pair, method, path, headers
):
    a, b, urls = pair
    client = await gateway_for(aiohttp_client, urls)
    a.drop = 1
    before = counted("upstream_retried_total")

    response = await client.request(method, path, json={} if method != "GET" else None, headers=headers)

    assert await instance_of(response) == "b"
    assert a.hits == [(method, path)] and b.hits == [(method, path)]
    assert counted("upstream_retried_total") - before == 1


async def test_a_plain_post_is_never_sent_twice(aiohttp_client, pair):
    a, b, urls = pair
    client = await gateway_for(aiohttp_client, urls)
    a.drop = 1

    response = await client.post("/api/v1/baskets", json={"variants": []})

    assert response.status == 502
    assert await response.json() == {"error": {"http_code": 502, "message": "The basket service failed to answer"}}
    assert a.hits == [("POST", "/api/v1/baskets")] and b.hits == []


async def test_an_empty_idempotency_key_does_not_make_a_post_repeatable(aiohttp_client, pair):
    a, b, urls = pair
    client = await gateway_for(aiohttp_client, urls)
    a.drop = 1
    response = await client.post("/api/v1/orders", json={}, headers={"Idempotency-Key": " "})
    assert response.status == 502
    assert len(a.hits) + len(b.hits) == 1


async def test_the_retry_happens_once_only(aiohttp_client, pair):
    a, b, urls = pair
    client = await gateway_for(aiohttp_client, urls)
    a.drop = b.drop = 5

    response = await client.get("/api/v1/payments/types")

    assert response.status == 502
    # Not twice per instance either: aiohttp's own retry of idempotent methods is off.
    assert len(a.hits) == 1 and len(b.hits) == 1


async def test_a_single_instance_is_retried_on_a_fresh_connection(aiohttp_client, aiohttp_server):
    a = Instance("a")
    server = await aiohttp_server(a.app())
    client = await gateway_for(aiohttp_client, base(server))
    a.drop = 1
    assert await instance_of(await client.put("/api/v1/orders/x1/contact", json={})) == "a"
    assert len(a.hits) == 2


async def test_a_pooled_connection_closed_under_a_new_request_is_retried(aiohttp_client, pair):
    """The instance-shutting-down case: the first request leaves a keep-alive connection in the
    gateway's pool; the instance closes it just as the next request goes out on it."""
    a, b, urls = pair
    client = await gateway_for(aiohttp_client, urls)
    # Turns are per service: these all go to the orders pool.
    assert await instance_of(await client.get("/api/v1/orders/x1")) == "a"
    assert await instance_of(await client.get("/api/v1/orders/x1")) == "b"
    a.drop_reused = True

    response = await client.post("/api/v1/orders", json={}, headers={"Idempotency-Key": "k-2"})
    assert await instance_of(response) == "b"
    assert len(a.hits) == 2 and len(b.hits) == 2

    # The same without a key: the gateway cannot know whether the instance acted on it.
    assert await instance_of(await client.get("/api/v1/orders/x1")) == "b"  # turns: a, b, a (POST), b
    a.drop_reused, a.drop = False, 1
    response = await client.post("/api/v1/orders", json={})
    assert response.status == 502
    assert len(a.hits) == 3 and len(b.hits) == 3


async def test_a_connection_lost_after_the_answer_started_is_never_retried(aiohttp_client, pair):
    a, b, urls = pair
    client = await gateway_for(aiohttp_client, urls)
    a.cut = 1

    response = await client.get("/api/v1/payments/types")

    assert response.status == 502
    assert a.hits == [("GET", "/api/v1/payments/types")] and b.hits == []


async def test_a_timeout_is_504_and_never_retried(aiohttp_client, pair):
    a, b, urls = pair
    client = await gateway_for(aiohttp_client, urls, default_timeout=0.3)
    started = time.monotonic()

    response = await client.get("/api/v1/payments/types?sleep=3")

    assert response.status == 504
    assert time.monotonic() - started < 2
    assert len(a.hits) == 1 and b.hits == []


@contextlib.asynccontextmanager
async def resetting_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A raw TCP instance that reads a request's head, then resets the connection (RST)."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            heads.append(await reader.readuntil(b"\r\n\r\n"))
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", heads
    finally:
        server.close()
        await server.wait_closed()


async def test_a_reset_connection_is_retried_for_a_get_and_not_for_a_plain_post(aiohttp_client, aiohttp_server):
    b = Instance("b")
    server_b = await aiohttp_server(b.app())
    async with resetting_server() as (reset_url, heads):
        client = await gateway_for(aiohttp_client, f"{reset_url},{base(server_b)}")

        assert await instance_of(await client.get("/api/v1/payments/types")) == "b"
        assert len(heads) == 1 and heads[0].startswith(b"GET /api/v1/payments/types ")

        assert await instance_of(await client.get("/api/v1/payments/types")) == "b"  # b's turn
        response = await client.post("/api/v1/baskets", json={})
        assert response.status == 502
        assert len(heads) == 2 and heads[1].startswith(b"POST /api/v1/baskets ")
        assert len(b.hits) == 2
