"""Failures of the infrastructure under a piece of work, as opposed to bugs or bad input.

A request that meets one answers 503 (retry is safe: nothing was committed); an event handler
that meets one retries for as long as it takes, and is never parked for it.
"""

from __future__ import annotations

import aio_pika
import asyncpg


class Unavailable(Exception):
    """A dependency outside this process (a payment provider) gave no answer: it timed out, could
    not be reached or failed on its side (a 5xx). Not the work's fault; the same work later may
    succeed. Its message names the dependency and the failure, never the request's data."""


UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # A connection left mid-protocol by a server that went away ("another operation is in progress").
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    ConnectionError,
    OSError,
    TimeoutError,
    aio_pika.exceptions.AMQPConnectionError,
    aio_pika.exceptions.ChannelInvalidStateError,
    Unavailable,
)
