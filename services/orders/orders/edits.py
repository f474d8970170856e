"""What the HTTP handlers of orders share: asking another service, reading an order, locking an
editable one to change it.

A change of an order is one unit of work that locks the order (`lock_editable`), checks it and
changes it. What the change needs from another service (a basket snapshot, a shipping quote) is
asked before, from the order as read; if the locked order no longer is what the question was
asked with, the change raises `Conflict` and `retry_on_conflict` runs it again from the read.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from aiohttp import web

from orders import domain, queries
from shared import bus, runtime
from shared.contracts import Contract
from shared.http import ApiError, NotFound, optional_customer

log = logging.getLogger(__name__)


async def ask(request: web.Request, message: Contract, service: str) -> Any:
    """Request/reply with another service; its absence is a 503 in the GetCandy shape."""
    try:
        return await request.app[runtime.RPC].call(message)
    except bus.RpcError as exc:
        log.warning("request/reply failed", extra={"type": message.type, "error": str(exc)})
        raise ApiError(503, f"The {service} service is unavailable") from exc


def visible(request: web.Request, order: asyncpg.Record) -> bool:
    """A customer's order is theirs alone: to anyone else it is unknown. A guest's is reached by its
    unguessable id, by whoever holds it. (An order's customer never changes once set.)"""
    return order["customer_id"] is None or order["customer_id"] == optional_customer(request)


async def read_order(request: web.Request, order_id: str) -> asyncpg.Record:
    """The order as it is now (no lock); 404 when unknown or another customer's."""
    order = await queries.get_order(request.app[runtime.POOL], order_id)
    if order is None or not visible(request, order):
        raise NotFound()
    return order


def ensure_editable(order: asyncpg.Record) -> None:
    """403 for a placed or expired order, 409 while it is being processed."""
    try:
        domain.ensure_editable(order["status"])
    except domain.NotEditable as exc:
        raise ApiError(exc.http_status, exc.message) from None


async def read_editable(request: web.Request, order_id: str) -> asyncpg.Record:
    order = await read_order(request, order_id)
    ensure_editable(order)
    return order


async def lock_editable(request: web.Request, conn: asyncpg.Connection, order_id: str) -> asyncpg.Record:
    """The order locked for the unit of work on `conn`, if it may still change (and is the caller's
    to change: 404 otherwise, as for an unknown one)."""
    order = await queries.lock_order(conn, order_id)
    if order is None or not visible(request, order):
        raise NotFound()
    ensure_editable(order)
    return order
