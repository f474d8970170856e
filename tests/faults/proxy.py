"""A TCP proxy for fault tests: pass-through by default; adds latency, drops or stalls on demand.

Runs its own event loop in a background thread, so that the faults it injects do not depend on
what the test's loop is doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time


class FaultyProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.latency = 0.0
        self._stalled_until = 0.0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="faulty-proxy")
        self._server: asyncio.Server | None = None

    def start(self) -> FaultyProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", 0), self._loop
        ).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def drop_all(self) -> int:
        """Reset every open connection, as a broken network path would."""

        async def drop() -> int:
            writers = list(self._writers)
            for writer in writers:
                with contextlib.suppress(Exception):
                    writer.transport.abort()
            return len(writers)

        return asyncio.run_coroutine_threadsafe(drop(), self._loop).result(5)

    def stall(self, seconds: float) -> None:
        """Forward nothing, in either direction, for this long; connections stay open."""
        self._stalled_until = time.monotonic() + seconds

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                while (wait := self._stalled_until - time.monotonic()) > 0:  # noqa: ASYNC110 - a deadline, not an event
                    await asyncio.sleep(min(wait, 0.1))
                if self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()
