"""The gateway's HTTP/1.1 client for its upstreams: one request, one answer, keep-alive connections.

Why not aiohttp's ClientSession: its general machinery (cookie jar, redirects, proxies, traces,
client middlewares, URL and header processing) cost about a third of the gateway's CPU per
forwarded request. The upstreams are the project's own services speaking HTTP/1.1, and the
gateway needs little: send a request on a pooled connection (or a new one), read one answer framed
by Content-Length, chunked encoding or the connection's end, whole into memory, as it came
(nothing is decompressed).

Failures are told apart the way forwarding needs them:

- `Unreachable`: no connection could be made (refused, reset during the handshake, connect
  timeout): nothing was sent, another instance may take the request;
- `Lost`: the connection closed before the answer's head was complete (typically a pooled
  connection the instance closed as the request went out): it may or may not have been handled;
- `UpstreamError`, the base of both: anything else, an answer malformed or cut short.

It never sends a request twice on its own: whether to is forwarding's decision (its rule is wider
than HTTP's idempotent methods, and it prefers another instance). The request's deadline is the
caller's (`asyncio.timeout` around `request`): a connection whose exchange was interrupted is
closed, never pooled again.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

from multidict import CIMultiDict
from opentelemetry.trace import SpanKind
from yarl import URL

from shared import tracing


class UpstreamError(Exception):
    """The exchange failed: the answer was malformed or cut short."""


class Unreachable(UpstreamError):
    """No connection to the instance could be made: nothing was sent."""


class Lost(UpstreamError):
    """The connection closed before the answer's head was complete."""


@dataclass(slots=True)
class Answer:
    status: int
    headers: CIMultiDict[str]
    body: bytes


# An answer's status line and headers: far above what the services send, a bound on memory.
MAX_HEAD_BYTES = 64 * 1024
# Methods whose request carries a length even without a body (as aiohttp's client sends it).
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class _Connection(asyncio.Protocol):
    """One connection and the answer being read on it; the parse advances as bytes arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Answer] | None = None
        self._head_only = False
        self._answer: Answer | None = None  # the head once read; its body is then being framed
        self._reusable = True
        self._length: int | None = None  # Content-Length framing; None: chunked or until the end
        self._chunked = False
        self._chunks: list[bytes] = []
        self._position = 0  # how far the chunked body has been decoded

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._advance(eof=True)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is not None and not self._waiter.done():
            self._advance(eof=False)
        else:  # bytes nobody asked for: the connection cannot be trusted with another request
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def exchange(self, request: bytes, body: bytes | None, head_only: bool) -> asyncio.Future[Answer]:
        assert self.transport is not None and not self.closed
        self._waiter = asyncio.get_running_loop().create_future()
        self._head_only = head_only
        self._answer = None
        self._reusable = True
        self._length = None
        self._chunked = False
        self._chunks = []
        self._position = 0
        if body:
            self.transport.writelines((request, body))  # one system call, no copy of a large body
        else:
            self.transport.write(request)
        return self._waiter

    @property
    def reusable(self) -> bool:
        return self._reusable and not self.closed and not self._buffer

    def _advance(self, eof: bool) -> None:
        assert self._waiter is not None
        try:
            if self._answer is None and not self._read_head(eof):
                return
            body = self._read_body(eof)
        except UpstreamError as exc:
            self._reusable = False
            self._waiter.set_exception(exc)
            return
        if body is not None:
            assert self._answer is not None
            self._answer.body = body
            self._waiter.set_result(self._answer)

    def _read_head(self, eof: bool) -> bool:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if eof:
                    raise Lost("connection closed before the answer")
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise UpstreamError("answer head too large")
                return False
            # Header bytes are not all ASCII in theory: they go back out byte for byte.
            lines = self._buffer[:end].decode("utf-8", "surrogateescape").split("\r\n")
            del self._buffer[: end + 4]
            version, _, rest = lines[0].partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
                raise UpstreamError(f"malformed status line {lines[0][:100]!r}")
            status = int(code)
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue): the final one follows
            break
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise UpstreamError(f"malformed header line {line[:100]!r}")
            headers.add(name, value.strip(" \t"))
        connection = headers.get("Connection", "").lower()
        self._reusable = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
        self._answer = Answer(status, headers, b"")
        if self._head_only or status in (204, 304):
            self._length = 0
        elif "Transfer-Encoding" in headers:
            self._chunked = headers["Transfer-Encoding"].lower().rstrip().endswith("chunked")
        elif "Content-Length" in headers:
            lengths = {value.strip() for value in headers.getall("Content-Length")}
            length = lengths.pop()
            if lengths or not length.isdigit():
                raise UpstreamError("malformed Content-Length")
            self._length = int(length)
        if self._length is None and not self._chunked:
            self._reusable = False  # the body ends with the connection
        return True

    def _read_body(self, eof: bool) -> bytes | None:
        """The whole body once it has arrived; None while more is to come."""
        if self._chunked:
            return self._read_chunks(eof)
        if self._length is None:
            return bytes(self._buffer) if eof else None
        if len(self._buffer) < self._length:
            if eof:
                raise UpstreamError("connection closed in the middle of the answer")
            return None
        body = bytes(self._buffer[: self._length])
        del self._buffer[: self._length]
        return body

    def _read_chunks(self, eof: bool) -> bytes | None:
        buffer = self._buffer
        while True:
            line_end = buffer.find(b"\r\n", self._position)
            if line_end < 0:
                break
            try:
                size = int(buffer[self._position : line_end].split(b";", 1)[0], 16)
            except ValueError as exc:
                raise UpstreamError("malformed chunk size") from exc
            if size < 0:
                raise UpstreamError("malformed chunk size")
            if size == 0:
                # Trailers, if any, are dropped (as aiohttp's client does): up to the empty line.
                end = buffer.find(b"\r\n\r\n", line_end)
                if end < 0:
                    break
                del buffer[: end + 4]
                return b"".join(self._chunks)
            start = line_end + 2
            if len(buffer) < start + size + 2:
                break
            if buffer[start + size : start + size + 2] != b"\r\n":
                raise UpstreamError("malformed chunk")
            self._chunks.append(bytes(buffer[start : start + size]))
            self._position = start + size + 2
        if eof:
            raise UpstreamError("connection closed in the middle of the answer")
        return None


class _Origin:
    """The idle connections to one instance, the most recently used last."""

    def __init__(self, url: str) -> None:
        parsed = URL(url)
        if parsed.host is None or parsed.scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) base URL: {url}")
        self.host = parsed.host
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parsed.scheme == "https" else None
        host = f"[{parsed.raw_host}]" if ":" in (parsed.raw_host or "") else parsed.raw_host
        self.host_header = host if parsed.is_default_port() else f"{host}:{self.port}"
        self.idle: list[_Connection] = []


class UpstreamClient:
    """Keep-alive connections to every instance; at most `limit` requests in flight at once.

    A connection idle for longer than `keepalive` seconds is not used again: the instance may be
    about to close it (aiohttp's server does after 75 s), and a request sent on a connection just
    closed under it is one the caller can only retry when it is safe to repeat.
    """

    def __init__(self, limit: int, keepalive: float = 30.0) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._keepalive = keepalive
        self._origins: dict[str, _Origin] = {}

    async def request(
        self,
        base_url: str,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: bytes | None,
        connect_timeout: float,
    ) -> Answer:
        """Send `method target` to the instance at `base_url`; `target` is the raw path and query."""
        origin = self._origins.get(base_url)
        if origin is None:
            origin = self._origins[base_url] = _Origin(base_url)
        if tracing.ENABLED:
            with tracing.span(method, SpanKind.CLIENT, upstream=f"{origin.host}:{origin.port}"):
                tracing.inject(headers)  # the service's spans are children of this exchange
                return await self._send(origin, method, target, headers, body, connect_timeout)
        return await self._send(origin, method, target, headers, body, connect_timeout)

    async def _send(
        self,
        origin: _Origin,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: bytes | None,
        connect_timeout: float,
    ) -> Answer:
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {origin.host_header}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        if body is not None or method in BODY_METHODS:
            lines.append(f"Content-Length: {len(body) if body else 0}\r\n")
        lines.append("\r\n")
        # Names and values come from a request aiohttp parsed (no CR or LF) or from the gateway.
        head = "".join(lines).encode("utf-8", "surrogateescape")
        async with self._slots:
            connection = self._idle(origin) or await self._connect(origin, connect_timeout)
            done = False
            try:
                answer = await connection.exchange(head, body, head_only=method == "HEAD")
                done = True
            finally:
                if done and connection.reusable:
                    connection.idle_since = time.monotonic()
                    origin.idle.append(connection)
                else:  # interrupted (the deadline), failed or not reusable
                    connection.close()
        return answer

    def _idle(self, origin: _Origin) -> _Connection | None:
        while origin.idle:
            connection = origin.idle.pop()
            if connection.closed or connection.transport is None or connection.transport.is_closing():
                continue
            if time.monotonic() - connection.idle_since > self._keepalive:
                # The most recent is too old: so are all the others.
                for stale in [connection, *origin.idle]:
                    stale.close()
                origin.idle.clear()
                return None
            return connection
        return None

    async def _connect(self, origin: _Origin, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(_Connection, origin.host, origin.port, ssl=origin.ssl)
        except OSError as exc:  # refused, reset, unresolvable, TLS failure; TimeoutError is one too
            raise Unreachable(f"cannot connect to {origin.host}:{origin.port}: {exc!r}") from exc
        return connection

    def close(self) -> None:
        for origin in self._origins.values():
            for connection in origin.idle:
                connection.close()
            origin.idle.clear()
