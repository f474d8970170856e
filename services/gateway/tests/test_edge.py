"""The gateway's edge: routing errors, body limit, request ids, access logs, CORS, rate limit, upstream failures."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.edge import TokenBuckets, bucket_of, client_address, parse_networks
from shared import runtime
from shared.http import REQUEST_ID_HEADER

ALLOWED = "https://shop.example.com"


# ---------------------------------------------------------------------------------------------
# Routing errors and the body limit


async def test_unknown_path_is_404_in_getcandy_shape(gateway):
    for path in ("/api/v1/nowhere", "/api/v1/products/abc/def/ghi", "/nowhere", "/api/v2/products"):
        response = await gateway.get(path)
        assert response.status == 404, path
        assert await response.json() == {"error": {"http_code": 404, "message": "Resource not found"}}


async def test_wrong_method_is_405_with_allow(gateway):
    response = await gateway.patch("/api/v1/products")
    assert response.status == 405
    assert await response.json() == {"error": {"http_code": 405, "message": "Method not allowed"}}
    assert set(response.headers["Allow"].split(",")) == {"GET", "POST"}

    response = await gateway.post("/api/v1/orders/abcdefgh12345678")
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) == {"GET", "PUT"}


async def test_body_too_large_is_413_in_getcandy_shape(make_gateway):
    client = await make_gateway(max_body_bytes=1024)
    response = await client.post("/api/v1/baskets", data=b"x" * 2048, headers={"Content-Type": "application/json"})
    assert response.status == 413
    assert await response.json() == {"error": {"http_code": 413, "message": "Payload too large"}}
    # Just under the limit goes through.
    response = await client.post("/api/v1/baskets", data=b"{}" + b" " * 1000)
    assert response.status == 200


async def test_path_is_forwarded_still_encoded(gateway):
    response = await gateway.get("/api/v1/products/abc%2Fdef?include=variants&x=%26")
    assert response.status == 200
    assert (await response.json())["path"] == "/api/v1/products/abc%2Fdef?include=variants&x=%26"


# ---------------------------------------------------------------------------------------------
# Request ids and access logs


async def test_request_id_is_echoed_and_passed_upstream(gateway):
    response = await gateway.get("/api/v1/products", headers={REQUEST_ID_HEADER: "req-123"})
    assert response.headers[REQUEST_ID_HEADER] == "req-123"
    assert (await response.json())["headers"]["x-request-id"] == "req-123"


async def test_request_id_is_made_when_absent_or_unusable(gateway):
    for sent in (None, "x" * 200):
        headers = {} if sent is None else {REQUEST_ID_HEADER: sent}
        response = await gateway.get("/api/v1/products", headers=headers)
        made = response.headers[REQUEST_ID_HEADER]
        assert re.fullmatch(r"[0-9a-f]{32}", made)
        assert (await response.json())["headers"]["x-request-id"] == made


async def test_errors_carry_the_request_id_too(gateway):
    response = await gateway.get("/api/v1/nowhere", headers={REQUEST_ID_HEADER: "req-404"})
    assert response.headers[REQUEST_ID_HEADER] == "req-404"


async def test_access_log_is_a_json_line_with_request_id_route_status_and_duration(gateway, caplog):
    caplog.set_level(logging.INFO, logger="access")
    await gateway.get("/api/v1/products/abcdefgh12345678?status=404", headers={REQUEST_ID_HEADER: "req-log"})
    records = [r for r in caplog.records if r.name == "access" and getattr(r, "request_id", None) == "req-log"]
    assert len(records) == 1
    line = orjson.loads(runtime.JsonFormatter().format(records[0]))
    assert line["request_id"] == "req-log"
    assert line["route"] == "/api/v1/products/{id}"
    assert line["path"] == "/api/v1/products/abcdefgh12345678"
    assert line["method"] == "GET"
    assert line["status"] == 404
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0


# ---------------------------------------------------------------------------------------------
# CORS


@pytest.fixture
async def cors_gateway(make_gateway):
    return await make_gateway(cors_origins=[ALLOWED])


async def test_cors_allowed_origin(cors_gateway):
    response = await cors_gateway.get("/api/v1/products", headers={"Origin": ALLOWED})
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "X-Request-Id" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_cors_disallowed_origin_gets_no_cors_headers(cors_gateway):
    response = await cors_gateway.get("/api/v1/products", headers={"Origin": "https://evil.example.com"})
    assert response.status == 200  # the server answers; the browser withholds it from the script
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    assert "Origin" in response.headers["Vary"]


async def test_cors_preflight_allowed(cors_gateway):
    response = await cors_gateway.options(
        "/api/v1/baskets",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, idempotency-key",
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")} == {
        "GET",
        "POST",
        "PUT",
        "DELETE",
    }
    allowed_headers = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "idempotency-key", "authorization"} <= allowed_headers
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert "X-Upstream" not in response.headers  # answered by the gateway


async def test_cors_preflight_disallowed_origin(cors_gateway):
    response = await cors_gateway.options(
        "/api/v1/baskets", headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"}
    )
    assert response.status == 403
    assert await response.json() == {"error": {"http_code": 403, "message": "Origin not allowed"}}
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]


async def test_cors_headers_on_errors_so_a_browser_can_read_them(cors_gateway):
    response = await cors_gateway.get("/api/v1/nowhere", headers={"Origin": ALLOWED})
    assert response.status == 404
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED


async def test_plain_options_is_405(cors_gateway):
    response = await cors_gateway.options("/api/v1/products")
    assert response.status == 405


async def test_cors_any_origin(make_gateway):
    client = await make_gateway(cors_origins=["*"])
    response = await client.get("/api/v1/products", headers={"Origin": "https://anyone.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# ---------------------------------------------------------------------------------------------
# Rate limit


def test_token_bucket_burst_then_refill():
    now = [100.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token at 2/s
    assert buckets.take("b") == 0.0  # another client has its own bucket
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] += 60  # never more than the burst
    assert [buckets.take("a") for _ in range(4)][-1] == pytest.approx(0.5)


def test_token_bucket_forgets_least_recent_clients():
    buckets = TokenBuckets(rate=1.0, burst=1, clock=lambda: 0.0, max_clients=2)
    buckets.take("a")
    buckets.take("b")
    buckets.take("c")  # evicts a
    assert buckets.take("a") == 0.0
    assert buckets.take("c") == pytest.approx(1.0)


async def test_burst_over_the_limit_is_429_with_retry_after(make_gateway):
    client = await make_gateway(rate_limit_rate=0.5, rate_limit_burst=3)
    statuses = [(await client.get("/api/v1/products")).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    response = await client.get("/api/v1/products")
    assert response.status == 429
    assert await response.json() == {"error": {"http_code": 429, "message": "Too many requests"}}
    assert response.headers["Retry-After"] == "2"  # one token at 0.5/s
    assert REQUEST_ID_HEADER in response.headers
    # Unknown paths cost tokens too, and health checks never do.
    assert (await client.get("/api/v1/nowhere")).status == 429
    assert (await client.get("/health/live")).status == 200
    assert (await client.get("/health/ready")).status == 200


async def test_rate_limit_refills(make_gateway):
    # 5 tokens a second: the second request comes well within 200 ms, a token is back after it.
    client = await make_gateway(rate_limit_rate=5, rate_limit_burst=1)
    assert (await client.get("/api/v1/products")).status == 200
    limited = await client.get("/api/v1/products")
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "1"
    deadline = time.monotonic() + 2.0
    while (await client.get("/api/v1/products")).status == 429:
        assert time.monotonic() < deadline, "no token after 2 s at 5/s"
        await asyncio.sleep(0.02)


async def test_rate_limit_off_when_rate_is_zero(make_gateway):
    client = await make_gateway(rate_limit_rate=0, rate_limit_burst=1)
    assert {(await client.get("/api/v1/products")).status for _ in range(5)} == {200}


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(make_gateway):
    # Untrusted peer: X-Forwarded-For is ignored, all requests share the peer's bucket.
    client = await make_gateway(rate_limit_rate=0.01, rate_limit_burst=1)
    assert (await client.get("/api/v1/products", headers={"X-Forwarded-For": "198.51.100.1"})).status == 200
    assert (await client.get("/api/v1/products", headers={"X-Forwarded-For": "198.51.100.2"})).status == 429

    # Trusted peer (the test client is 127.0.0.1): each forwarded client has its own bucket.
    client = await make_gateway(rate_limit_rate=0.01, rate_limit_burst=1, trusted_proxies=["127.0.0.0/8"])
    first = await client.get("/api/v1/products", headers={"X-Forwarded-For": "198.51.100.1"})
    assert first.status == 200
    assert (await first.json())["headers"]["x-forwarded-for"] == "198.51.100.1"
    assert (await client.get("/api/v1/products", headers={"X-Forwarded-For": "198.51.100.2"})).status == 200
    assert (await client.get("/api/v1/products", headers={"X-Forwarded-For": "198.51.100.1"})).status == 429


def _request(peer: str, forwarded: str | None) -> web.Request:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}

    class Transport:
        def get_extra_info(self, name, default=None):
            return (peer, 1234) if name == "peername" else default

    return make_mocked_request("GET", "/", headers=headers, transport=Transport())


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.0.0.5", "203.0.113.7", "203.0.113.7"),  # one trusted proxy
        ("10.0.0.5", "1.1.1.1, 203.0.113.7", "203.0.113.7"),  # the client wrote a hop of its own
        ("10.0.0.5", "203.0.113.7, 10.0.0.9", "203.0.113.7"),  # two proxies of ours
        ("10.0.0.5", "10.0.0.8, 10.0.0.9", "10.0.0.5"),  # nothing but proxies
        ("10.0.0.5", "not-an-ip", "10.0.0.5"),
        ("10.0.0.5", None, "10.0.0.5"),
        ("192.0.2.1", "203.0.113.7", "192.0.2.1"),  # an untrusted peer's header is ignored
        ("10.0.0.5", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_address(peer, forwarded, expected):
    assert client_address(_request(peer, forwarded), parse_networks(["10.0.0.0/8"])) == expected


def test_an_ipv6_client_is_counted_by_its_64():
    assert bucket_of("2001:db8:1:2:aaaa::1") == bucket_of("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert bucket_of("2001:db8:1:3::1") != bucket_of("2001:db8:1:2::1")
    assert bucket_of("::ffff:192.0.2.1") == "192.0.2.1"
    assert bucket_of("192.0.2.1") == "192.0.2.1"
    assert bucket_of("unknown") == "unknown"


# ---------------------------------------------------------------------------------------------
# Upstream failures


async def test_upstream_down_is_503_and_recovers(make_gateway, aiohttp_server, upstream, make_echo_app):
    port = upstream.port
    client = await make_gateway()
    assert (await client.get("/api/v1/payments/types")).status == 200
    await upstream.close()
    response = await client.get("/api/v1/payments/types")
    assert response.status == 503
    assert await response.json() == {"error": {"http_code": 503, "message": "The payments service is unavailable"}}
    await aiohttp_server(make_echo_app(), port=port)
    assert (await client.get("/api/v1/payments/types")).status == 200


async def test_slow_upstream_is_504(make_gateway):
    client = await make_gateway(default_timeout=0.2)
    started = time.monotonic()
    response = await client.get("/api/v1/payments/types?sleep=5")
    assert response.status == 504
    assert await response.json() == {
        "error": {"http_code": 504, "message": "The payments service did not answer in time"}
    }
    assert time.monotonic() - started < 2


async def test_upstream_dropping_the_connection_is_502(make_gateway):
    client = await make_gateway()
    response = await client.get("/api/v1/payments/types?drop=1")
    assert response.status == 502
    assert await response.json() == {"error": {"http_code": 502, "message": "The payments service failed to answer"}}


async def test_upstream_answers_pass_through(gateway):
    response = await gateway.get("/api/v1/orders/abcdefgh12345678?status=404")
    assert response.status == 404
    assert response.headers["X-Upstream"] == "echo"
