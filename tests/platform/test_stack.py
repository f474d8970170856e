"""The five services as real processes: ready, behind the gateway, and recovering."""

from __future__ import annotations

import signal

import aiohttp

from tests.support import ALL_SERVICES, Stack


async def test_every_service_reports_ready(stack: Stack):
    async with aiohttp.ClientSession() as session:
        for name in ALL_SERVICES:
            async with session.get(stack.url(name) + "/health/ready") as response:
                assert response.status == 200, name
                assert (await response.json())["status"] == "ready"
            async with session.get(stack.url(name) + "/health/live") as response:
                assert response.status == 200, name


async def test_gateway_answers_503_in_getcandy_shape_while_a_service_is_down_and_recovers(stack: Stack):
    basket = stack["basket"]
    async with aiohttp.ClientSession() as session:
        assert basket.stop(signal.SIGTERM) == 0, "graceful shutdown exits cleanly"
        try:
            async with session.get(stack.gateway + "/products") as response:
                assert response.status == 503
                body = await response.json()
                assert body == {"error": {"http_code": 503, "message": "The basket service is unavailable"}}
                assert response.headers["X-Request-Id"]
        finally:
            basket.start()
            basket.wait_ready()
        async with session.get(stack.gateway + "/products") as response:
            assert response.status != 503
