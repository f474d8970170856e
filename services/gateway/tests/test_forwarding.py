"""What a forwarded request and its answer carry: hop-by-hop headers stripped, the client's
address appended, large bodies, an encoded answer passed back as the service encoded it."""

from __future__ import annotations

import asyncio
import gzip
import os

from aiohttp import web

from gateway.app import create_app
from gateway.settings import GatewaySettings

SERVICES = ("basket", "orders", "shipping", "payments")


async def test_hop_by_hop_and_private_headers_are_not_forwarded(gateway):
    response = await gateway.get(
        "/api/v1/orders/abcdefgh12345678",
        headers={"Connection": "keep-alive", "TE": "trailers", "Cookie": "a=1", "X-Custom": "kept", "Accept": "x/y"},
    )
    seen = (await response.json())["headers"]
    assert seen["x-custom"] == "kept" and seen["accept"] == "x/y"
    assert not {"te", "cookie", "authorization", "x-commerce-identity"} & set(seen)
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["host"] != gateway.host  # the upstream's own
    assert response.headers["X-Upstream"] == "echo"


async def test_a_large_body_goes_up_and_an_encoded_answer_comes_back_untouched(aiohttp_client, aiohttp_server):
    async def handle(request: web.Request) -> web.Response:
        # The answer is the body received, gzipped: the gateway must not decode it on the way back.
        body = gzip.compress(await request.read())
        return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

    upstream = web.Application(client_max_size=2**20)
    upstream.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(upstream)
    base = str(server.make_url("")).rstrip("/")
    settings = GatewaySettings(**{f"{s}_url": base for s in SERVICES}, log_json=False)
    client = await aiohttp_client(create_app(settings))
    payload = os.urandom(200_000)
    assert len(payload) < settings.max_body_bytes

    response = await client.post("/api/v1/baskets", data=payload, auto_decompress=False)

    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await response.read()) == payload


async def test_a_compressed_request_body_goes_up_as_the_client_encoded_it(aiohttp_client, aiohttp_server):
    """The gateway forwards bytes: a gzip body reaches the service still gzipped, with its
    Content-Encoding (the service decodes it, within its own size limit)."""
    seen: dict[str, object] = {}

    async def handle(request: web.Request) -> web.Response:
        seen["encoding"] = request.headers.get("Content-Encoding")
        seen["json"] = await request.json()  # aiohttp's server decodes the gzip body
        return web.json_response({"ok": True})

    upstream = web.Application()
    upstream.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(upstream)
    base = str(server.make_url("")).rstrip("/")
    client = await aiohttp_client(create_app(GatewaySettings(**{f"{s}_url": base for s in SERVICES}, log_json=False)))

    body = gzip.compress(b'{"variants": [{"id": "abc", "quantity": 2}]}')
    response = await client.post(
        "/api/v1/baskets", data=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )

    assert response.status == 200, await response.text()
    assert seen == {"encoding": "gzip", "json": {"variants": [{"id": "abc", "quantity": 2}]}}


async def test_an_unknown_content_encoding_is_a_415_and_never_goes_up(gateway):
    for coding in ("br2", "gzip, br", "x-compress"):
        response = await gateway.post(
            "/api/v1/baskets",
            data=b'{"a": 1}',
            headers={"Content-Encoding": coding, "Content-Type": "application/json"},
        )
        assert response.status == 415, coding
        assert response.headers["Accept-Encoding"] == "gzip, deflate"
        assert (await response.json())["error"]["http_code"] == 415
        assert "X-Upstream" not in response.headers


async def test_a_get_body_is_not_sent_on(gateway):
    """A GET's body means nothing (RFC 9110) and the services never read one: dropped, with the
    Content-Encoding that described it, so that a broken one cannot upset the upstream connection."""
    response = await gateway.request(
        "GET", "/api/v1/orders/abcdefgh12345678", data=b"not gzip", headers={"Content-Encoding": "gzip"}
    )
    seen = await response.json()
    assert response.status == 200
    assert seen["body"] == "" and "content-encoding" not in seen["headers"]


async def test_a_body_slower_than_the_route_timeout_is_a_408(make_gateway):
    gateway = await make_gateway(default_timeout=0.5)

    async def trickle():
        yield b'{"variants":'
        await asyncio.sleep(2.0)
        yield b"[]}"

    response = await gateway.post("/api/v1/baskets", data=trickle(), headers={"Content-Type": "application/json"})

    assert response.status == 408
    assert (await response.json())["error"] == {
        "http_code": 408,
        "message": "The request body did not arrive within 0.5 s",
    }
