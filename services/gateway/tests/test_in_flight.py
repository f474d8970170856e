"""Each upstream service has its own limit of requests in flight: a slow service's excess is a 503
at once, and the other services go on answering as if nothing happened (issue 17)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.upstreams import Busy, InFlight
from shared import http
from shared.metrics import REGISTRY

ORDER = "/api/v1/orders/abcdefgh12345678"


def busy(service: str) -> float:
    return REGISTRY.get_sample_value("commerce_upstream_busy_total", {"upstream": service}) or 0


BASKET = "/api/v1/baskets/abcdefgh12345678"


class Stuck:
    """An upstream that holds every request until `release` is set, counting those it holds."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.held = 0

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.held += 1
            await self.release.wait()
            return http.json_response({"slow": True})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


async def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_slow_service_gets_503s_past_its_limit_and_the_others_are_unaffected(
    aiohttp_server, make_gateway, upstream: TestServer
):
    stuck = Stuck()
    slow = await aiohttp_server(stuck.app())
    gateway = await make_gateway(
        orders_url=str(slow.make_url("")).rstrip("/"),
        upstream_max_in_flight=3,
        upstream_admission_wait=0.1,
        default_timeout=20.0,
    )
    held = [asyncio.create_task(gateway.get(ORDER)) for _ in range(3)]
    await wait_until(lambda: stuck.held == 3)
    busy_before = busy("orders")

    # The slow service's excess: refused at once, in the GetCandy shape, never sent up.
    started = time.monotonic()
    excess = await asyncio.gather(*(gateway.get(ORDER) for _ in range(5)))
    waited = time.monotonic() - started
    for response in excess:
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert await response.json() == http.error_body(503, "The orders service is busy; please retry")
    assert waited < 1.0  # the admission wait (0.1 s), not the slow service's time
    assert stuck.held == 3
    assert busy("orders") == busy_before + 5

    # Meanwhile another service, through the same gateway, answers promptly, more at once than
    # the slow one's limit.
    started = time.monotonic()
    others = await asyncio.gather(*(gateway.get(BASKET) for _ in range(10)))
    assert [response.status for response in others] == [200] * 10
    assert time.monotonic() - started < 1.0
    assert all(response.headers["X-Upstream"] == "echo" for response in others)

    # The slow service recovers: the held requests are answered and its slots are free again.
    stuck.release.set()
    assert [(await task).status for task in held] == [200] * 3
    assert (await gateway.get(ORDER)).status == 200


async def test_a_slot_freed_within_the_admission_wait_is_taken():
    in_flight = InFlight("orders", limit=1, wait=1.0)
    order: list[str] = []

    async def first() -> None:
        async with in_flight:
            order.append("first in")
            await asyncio.sleep(0.1)
        order.append("first out")

    async def second() -> None:
        await asyncio.sleep(0.02)
        async with in_flight:
            order.append("second in")

    await asyncio.gather(first(), second())
    assert order == ["first in", "first out", "second in"]


async def test_past_the_admission_wait_the_request_is_busy_and_the_slot_is_kept():
    in_flight = InFlight("shipping", limit=1, wait=0.05)
    async with in_flight:
        started = time.monotonic()
        with pytest.raises(Busy) as refused:
            async with in_flight:
                pytest.fail("admitted past the limit")
        assert 0.04 < time.monotonic() - started < 0.5
        assert (refused.value.status, refused.value.headers) == (503, {"Retry-After": "1"})
    async with in_flight:  # the refused one took nothing: the slot is free once the first is out
        pass


async def test_a_zero_admission_wait_refuses_at_once_when_full():
    in_flight = InFlight("payments", limit=2, wait=0.0)
    async with in_flight, in_flight:
        with pytest.raises(Busy):
            async with in_flight:
                pass
