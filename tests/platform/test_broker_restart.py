"""A broker restart while events are pending: relay and consumers reconnect by themselves."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest

from tests.platform.conftest import Platform, wait_for

pytestmark = pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs a local RabbitMQ node")


async def rabbitmqctl(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert await proc.wait() == 0, f"rabbitmqctl {' '.join(args)} failed"


async def test_pending_events_are_delivered_after_a_broker_restart(platform: Platform):
    await platform.consumer("basket")
    await platform.relay()
    await platform.announce("before")
    await wait_for(lambda: _effects(platform, 1), what="delivery before the restart")

    await rabbitmqctl("stop_app")
    try:
        for i in range(20):
            await platform.announce(f"during-{i}")  # the database takes them; the broker is down
        await asyncio.sleep(1)
        assert await platform.outbox_rows() == 20
    finally:
        await rabbitmqctl("start_app")
        await rabbitmqctl("await_startup")

    await wait_for(lambda: _effects(platform, 21), timeout=60, what="all pending events after the restart")
    await wait_for(lambda: _drained(platform), timeout=10, what="outbox drained")
    await asyncio.sleep(0.5)
    assert await platform.effects("basket") == 21


async def _effects(platform: Platform, n: int) -> bool:
    return await platform.effects("basket") >= n


async def _drained(platform: Platform) -> bool:
    return await platform.outbox_rows() == 0
