"""Gateway test fixtures: a tiny upstream that echoes what it received, and gateways in front of it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.settings import GatewaySettings
from shared import http

UPSTREAMS = ("basket", "orders", "shipping", "payments", "customers")


def echo_app() -> web.Application:
    """Answers every path with what it saw; `?sleep=S` waits S seconds, `?status=N` answers N."""

    async def echo(request: web.Request) -> web.Response:
        if "sleep" in request.query:
            await asyncio.sleep(float(request.query["sleep"]))
        if "drop" in request.query:
            assert request.transport is not None
            request.transport.close()  # the connection dies before any answer
        body = await request.read()
        return http.json_response(
            {
                "method": request.method,
                "path": request.raw_path,
                "headers": {k.lower(): v for k, v in request.headers.items()},  # lower-case names
                "body": body.decode(errors="replace"),
            },
            status=int(request.query.get("status", "200")),
            headers={"X-Upstream": "echo"},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture
def make_echo_app() -> Callable[[], web.Application]:
    return echo_app


@pytest.fixture
async def upstream(aiohttp_server) -> TestServer:
    return await aiohttp_server(echo_app())


GatewayFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_gateway(aiohttp_client, upstream: TestServer) -> GatewayFactory:
    """A gateway whose four services are the echo upstream; keyword arguments override settings."""

    async def make(**overrides: Any) -> TestClient:
        urls = {f"{name}_url": str(upstream.make_url("")).rstrip("/") for name in UPSTREAMS}
        settings = GatewaySettings(**(urls | {"log_json": False} | overrides))
        return await aiohttp_client(create_app(settings))

    return make


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> TestClient:
    return await make_gateway()
