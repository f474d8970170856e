"""Failures of the infrastructure under a piece of work, as opposed to bugs or bad input.

A request that meets one answers 503 (retry is safe: nothing was committed); an event handler
that meets one retries for as long as it takes, and is never parked for it.
"""

from __future__ import annotations

import aio_pika
import asyncpg

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
)
