"""The scale suite's own system: two instances of every service behind one gateway.

A fresh database and bus namespace (like the fault suite), so that its books count only its own
orders. The fixture is named `stack` on purpose: in this folder it replaces the session's
single-instance stack, so the end-to-end tests imported by `test_replicas.py` run unchanged
against the replicated system.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from tests.support import Infra, Stack, migrate_all, start_infra, start_stack, stop_infra, stop_stack

REPLICAS = 2
ENV = {
    # Eight service processes of this stack share Postgres with the other suites' stacks.
    "PAYMENTS_SIDE_POOL_MAX": "2",
}


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    infra = start_infra()
    stack = None
    try:
        asyncio.run(migrate_all(infra))
        stack = start_stack(infra, tmp_path_factory.mktemp("scale-logs"), ENV, replicas=REPLICAS)
        asyncio.run(_plenty_of_stock(infra))
        yield stack
    finally:
        if stack is not None:
            stop_stack(stack)
        stop_infra(infra)


async def _plenty_of_stock(infra: Infra) -> None:
    conn = await asyncpg.connect(infra.admin_dsn)
    try:
        await conn.execute("UPDATE basket.variants SET inventory = 100000 WHERE backorder = 'in-stock' AND purchasable")
    finally:
        await conn.close()
