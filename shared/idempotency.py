"""`Idempotency-Key` for POST requests, in each service (why here and not in the gateway:
docs/decisions/idempotency.md).

A POST with the header is claimed in the service's own `idempotency_keys` table before its handler
runs, with `INSERT ... ON CONFLICT DO NOTHING`, so of any number of concurrent requests with one
key exactly one runs. The others see the claim:

- same request (hash of method, path with query and body) and the first response recorded:
  that response again (status and body), marked `Idempotent-Replayed: true`;
- same request still running: 409 with `Retry-After`;
- another request with the same key: 422.

The first response is recorded when the handler returns, whatever its status, except statuses
that say "nothing happened, try again" (5xx, 409, 429) and responses marked `Cache-Control:
no-store`: those release the key so that a retry runs. A claim whose request never finished (its
process died) is taken over after `lease`. Keys are kept for `retention` (at least 24 hours) and
purged in the background.

Scope: the identity's subject (an admin, a signed-in customer), else one shared storefront scope:
keys are meant to be unique (a random UUID per operation), as for every public API that offers them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable
from datetime import timedelta

import asyncpg
import orjson
from aiohttp import web

from shared import http, runtime

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = re.compile(r"^[!-~]{1,255}$")  # visible ASCII; a UUID fits
STOREFRONT_SCOPE = "storefront"
# A first response with one of these statuses did not take effect: the key is released for a retry.
RELEASING_STATUSES = frozenset({409, 429})

CLAIM = """
INSERT INTO idempotency_keys (key, scope, request_hash)
VALUES ($1, $2, $3)
ON CONFLICT (scope, key) DO NOTHING
RETURNING key
"""
LOOKUP = """
SELECT request_hash, status, response_body, response_type, created_at < now() - $3::interval AS stale
FROM idempotency_keys
WHERE scope = $1 AND key = $2
"""
# Compare-and-set: only an unfinished claim older than the lease, and only one taker.
TAKE_OVER = """
UPDATE idempotency_keys SET created_at = now()
WHERE scope = $1 AND key = $2 AND request_hash = $3 AND status IS NULL AND created_at < now() - $4::interval
RETURNING key
"""
COMPLETE = """
UPDATE idempotency_keys
SET status = $3, response_body = $4, response_type = $5, completed_at = now()
WHERE scope = $1 AND key = $2 AND status IS NULL
"""
RELEASE = "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL"
PURGE = """
DELETE FROM idempotency_keys
WHERE ctid = ANY (ARRAY(SELECT ctid FROM idempotency_keys WHERE created_at < now() - $1::interval LIMIT $2))
"""


def request_hash(method: str, path_qs: str, body: bytes) -> str:
    """The request a key stands for. A JSON body is canonicalised (key order, spacing) first."""
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body.strip() else b""
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        # Not JSON, or JSON orjson cannot write back (nested past its 255 levels): the bytes as
        # sent. The services refuse such bodies before a key is claimed; this only must not fail.
        canonical = body
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path_qs.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def scope_of(request: web.Request) -> str:
    who = http.identity(request)
    if who and who.get("sub"):
        return f"sub:{who['sub']}"
    return STOREFRONT_SCOPE


async def purge(pool: asyncpg.Pool, retention: timedelta, batch: int = 1000) -> int:
    """Delete keys older than `retention`, in batches so that no statement holds locks for long."""
    total = 0
    while True:
        result = await pool.execute(PURGE, retention, batch)
        deleted = int(result.split()[-1])
        total += deleted
        if deleted < batch:
            return total


def middleware(
    retention: timedelta = timedelta(hours=24),
    lease: timedelta = timedelta(seconds=45),
    purge_every: float = 600.0,
    clock: Callable[[], float] = time.monotonic,
) -> Callable:
    """The aiohttp middleware; place it after `http.standard_middlewares()`.

    `lease` must be longer than any request can run (the gateway gives up after its per-route
    timeout, 30 s at most): a claim older than that belongs to a process that died. Its length is
    how long a client retrying after such a death gets 409s, so it is kept just past that bound.
    """
    if retention < timedelta(hours=24):
        raise ValueError("idempotency keys are kept at least 24 hours")
    last_purge = float("-inf")  # the first keyed POST of a process purges
    tasks: set[asyncio.Task] = set()

    def maybe_purge(pool: asyncpg.Pool) -> None:
        # Piggybacks on traffic: with no keyed POSTs the table does not grow, so nothing is lost by
        # not purging; with traffic, at most one purge per `purge_every` per process.
        nonlocal last_purge
        now = clock()
        if now - last_purge < purge_every:
            return
        last_purge = now
        task = asyncio.create_task(_purge_quietly(pool, retention))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    @web.middleware
    async def idempotency(request: web.Request, handler: http.Handler) -> web.StreamResponse:
        key = request.headers.get(HEADER)
        if request.method != "POST" or key is None or request.match_info.http_exception is not None:
            return await handler(request)  # not keyed, or no such route (a 404/405 acts on nothing)
        if not KEY_PATTERN.match(key):
            raise http.ApiError(400, f"The {HEADER} header must be 1 to 255 visible ASCII characters")
        pool = request.app[runtime.POOL]
        maybe_purge(pool)
        body = await request.read()  # kept by aiohttp: the handler reads the same bytes
        scope = scope_of(request)
        digest = request_hash(request.method, request.rel_url.raw_path_qs, body)

        for _ in range(3):
            if await pool.fetchval(CLAIM, key, scope, digest) is not None:
                return await _run_claimed(request, handler, pool, scope, key)
            row = await pool.fetchrow(LOOKUP, scope, key, lease)
            if row is None:
                continue  # released or purged between our claim and the look-up: claim again
            if row["request_hash"] != digest:
                raise http.ValidationFailed.one(
                    "idempotency_key", f"This {HEADER} was already used with another request."
                )
            if row["status"] is not None:
                return web.Response(
                    status=row["status"],
                    body=row["response_body"],
                    headers={"Content-Type": row["response_type"] or "application/json", REPLAYED_HEADER: "true"},
                )
            if row["stale"] and await pool.fetchval(TAKE_OVER, scope, key, digest, lease) is not None:
                log.warning("idempotency key taken over after its lease", extra={"scope": scope})
                return await _run_claimed(request, handler, pool, scope, key)
            raise http.ApiError(409, f"A request with this {HEADER} is still in progress", headers={"Retry-After": "1"})
        raise http.ApiError(409, f"A request with this {HEADER} is still in progress", headers={"Retry-After": "1"})

    return idempotency


async def _run_claimed(
    request: web.Request, handler: http.Handler, pool: asyncpg.Pool, scope: str, key: str
) -> web.StreamResponse:
    try:
        # Errors become their GetCandy response here rather than further out, so that what is
        # recorded is exactly what the client sees.
        response = await http.error_middleware(request, handler)
    except BaseException:
        # Cancelled, or a redirect: nothing to record; let a retry run.
        await asyncio.shield(_release(pool, scope, key))
        raise
    body = response.body if isinstance(response, web.Response) else None
    # A response that must not be stored (issued tokens; the answer to a request carrying a
    # password, whose request hash would be a fast hash of that password) is not kept here either.
    no_store = "no-store" in response.headers.get("Cache-Control", "")
    if response.status >= 500 or response.status in RELEASING_STATUSES or not isinstance(body, bytes) or no_store:
        await asyncio.shield(_release(pool, scope, key))
        return response
    content_type = response.headers.get("Content-Type")
    await pool.execute(COMPLETE, scope, key, response.status, body, content_type)
    return response


_pending_releases: set[asyncio.Task] = set()


async def _release(pool: asyncpg.Pool, scope: str, key: str) -> None:
    try:
        await pool.execute(RELEASE, scope, key)
    except Exception as exc:
        # Usually the database is away (that is often why the request failed): keep trying in the
        # background, so that the client's retry runs as soon as it is back rather than after the
        # lease. Until then a retry gets 409, never a double.
        log.warning("could not release an idempotency key yet", extra={"scope": scope, "error": repr(exc)})
        task = asyncio.create_task(_release_later(pool, scope, key))
        _pending_releases.add(task)
        task.add_done_callback(_pending_releases.discard)


async def _release_later(pool: asyncpg.Pool, scope: str, key: str, attempts: int = 30) -> None:
    for _ in range(attempts):
        await asyncio.sleep(1.0)
        try:
            await pool.execute(RELEASE, scope, key)
            return
        except Exception:  # still away; the lease is the backstop
            continue
    log.error("could not release an idempotency key; it expires with its lease", extra={"scope": scope})


async def _purge_quietly(pool: asyncpg.Pool, retention: timedelta) -> None:
    try:
        deleted = await purge(pool, retention)
    except Exception:
        log.exception("idempotency key purge failed")
        return
    if deleted:
        log.info("idempotency keys purged", extra={"deleted": deleted})
