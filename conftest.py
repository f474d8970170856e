"""Fixtures for every test in the repository (services/*/tests and tests/)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support import Infra, Stack, migrate_all, start_infra, start_stack, stop_infra, stop_stack


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """A fresh database and bus namespace for this run, dropped at the end."""
    infra = start_infra()
    try:
        asyncio.run(migrate_all(infra))
        yield infra
    finally:
        stop_infra(infra)


@pytest.fixture(scope="session")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The six services as real processes on loopback ports, started once per run."""
    log_dir: Path = tmp_path_factory.mktemp("stack-logs")
    stack = start_stack(infra, log_dir)
    try:
        yield stack
    finally:
        stop_stack(stack)


@pytest.fixture
async def admin_db(infra: Infra) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the run's database, for assertions across schemas."""
    conn = await asyncpg.connect(infra.admin_dsn)
    try:
        yield conn
    finally:
        await conn.close()
