"""Resources of the payments app beyond the shared ones: the side pool and the providers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from payments.providers import Provider, build_providers
from payments.settings import PaymentsSettings
from shared import db

SIDE_POOL = web.AppKey("side_pool", asyncpg.Pool)
PROVIDERS = web.AppKey("providers", dict[str, Provider])


def side_resources(settings: PaymentsSettings):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        side_settings = settings.model_copy(update={"db_pool_min": 1, "db_pool_max": settings.side_pool_max})
        app[SIDE_POOL] = await db.create_pool(side_settings)
        app[PROVIDERS] = build_providers(settings.merchant, app[SIDE_POOL], settings.client_token_ttl)
        yield
        await app[SIDE_POOL].close()

    return ctx
