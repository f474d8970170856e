"""The gateway's upstream HTTP/1.1 client against a raw server that answers exactly the bytes given:
framing (length, chunks, the connection's end), interim answers, keep-alive reuse, and the failures
told apart (unreachable, lost before the answer, cut or malformed)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from multidict import CIMultiDict

from gateway.upstream_http import Lost, Unreachable, UpstreamClient, UpstreamError


class RawServer:
    """Reads each request (head and Content-Length body) and writes `answer(request)` back;
    `close_after` closes the connection after answering."""

    def __init__(self, answer: Callable[[bytes], bytes], close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lengths = [line.split(b":")[1] for line in head.lower().split(b"\r\n") if b"content-length" in line]
                length = int(lengths[0]) if lengths else 0
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                writer.write(self.answer(request))
                await writer.drain()
                if self.close_after:
                    break
        writer.close()


@contextlib.asynccontextmanager
async def serving(server: RawServer) -> AsyncIterator[str]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        listener.close()


def fixed(raw: bytes) -> Callable[[bytes], bytes]:
    return lambda request: raw


async def fetch(client: UpstreamClient, base: str, method: str = "GET", body: bytes | None = None):
    return await client.request(base, method, "/x?y=%2F", CIMultiDict({"X-A": "1"}), body, connect_timeout=1.0)


async def test_a_request_goes_out_as_given_and_the_connection_is_reused():
    server = RawServer(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-B: 1\r\nX-B: 2\r\n\r\nok"))
    client = UpstreamClient(limit=10)
    async with serving(server) as base:
        first = await fetch(client, base)
        second = await fetch(client, base, "PUT", b"body")
    assert (first.status, first.body, first.headers.getall("x-b")) == (200, b"ok", ["1", "2"])
    assert second.body == b"ok"
    assert server.connections == 1
    port = base.rsplit(":", 1)[1]
    assert server.requests[0] == f"GET /x?y=%2F HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-A: 1\r\n\r\n".encode()
    assert server.requests[1].endswith(b"Content-Length: 4\r\n\r\nbody")
    client.close()


async def test_a_chunked_answer_is_decoded_and_the_connection_reused():
    server = RawServer(
        fixed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n")
    )
    client = UpstreamClient(limit=10)
    async with serving(server) as base:
        assert (await fetch(client, base)).body == b"abcde"
        assert (await fetch(client, base)).body == b"abcde"
    assert server.connections == 1


async def test_an_answer_without_length_ends_with_the_connection_which_is_not_reused():
    server = RawServer(fixed(b"HTTP/1.1 200 OK\r\n\r\nuntil the end"), close_after=True)
    client = UpstreamClient(limit=10)
    async with serving(server) as base:
        assert (await fetch(client, base)).body == b"until the end"
        assert (await fetch(client, base)).body == b"until the end"
    assert server.connections == 2


async def test_connection_close_is_honoured_and_an_interim_answer_skipped():
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    server = RawServer(fixed(interim + b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
    client = UpstreamClient(limit=10)
    async with serving(server) as base:
        assert (await fetch(client, base, "POST")).status == 201
        assert (await fetch(client, base, "POST")).status == 201
    assert server.connections == 2
    assert b"Content-Length: 0\r\n" in server.requests[0]  # a POST always states its length


async def test_head_and_204_have_no_body_whatever_their_length_says():
    server = RawServer(
        lambda request: (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
            if request.startswith(b"HEAD")
            else b"HTTP/1.1 204 No Content\r\n\r\n"
        )
    )
    client = UpstreamClient(limit=10)
    async with serving(server) as base:
        head = await fetch(client, base, "HEAD")
        assert (head.status, head.body, head.headers["Content-Length"]) == (200, b"", "10")
        assert (await fetch(client, base, "DELETE")).status == 204
    assert server.connections == 1


async def test_a_large_body_goes_both_ways():
    body = bytes(range(256)) * 4096  # 1 MiB
    server = RawServer(lambda request: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(request) + request)
    client = UpstreamClient(limit=10)
    async with serving(server) as base:
        answer = await fetch(client, base, "POST", body)
    assert answer.body.endswith(b"\r\n\r\n" + body)


async def test_a_refused_connection_is_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(Unreachable):
            await fetch(UpstreamClient(limit=10), f"http://127.0.0.1:{port}")


async def test_a_connection_closed_before_any_answer_is_lost():
    server = RawServer(fixed(b""), close_after=True)
    async with serving(server) as base:
        with pytest.raises(Lost):
            await fetch(UpstreamClient(limit=10), base)


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # cut in the middle of the body
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",  # cut in the middle of a chunk
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # not a chunk size
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",  # two lengths
        b"SPDY/3 200 OK\r\n\r\n",  # not HTTP/1.x
        b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
    ],
)
async def test_a_cut_or_malformed_answer_is_an_upstream_error_but_not_lost(raw):
    server = RawServer(fixed(raw), close_after=True)
    async with serving(server) as base:
        with pytest.raises(UpstreamError) as caught:
            await fetch(UpstreamClient(limit=10), base)
    assert not isinstance(caught.value, Lost | Unreachable)


async def test_an_interrupted_exchange_closes_its_connection_and_the_next_uses_a_fresh_one():
    answers = iter([b"", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    server = RawServer(lambda request: next(answers))
    client = UpstreamClient(limit=10)
    async with serving(server) as base:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await fetch(client, base)  # no answer comes
        assert (await fetch(client, base)).status == 200
    assert server.connections == 2


async def test_a_connection_idle_past_the_keepalive_is_not_used_again():
    server = RawServer(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    client = UpstreamClient(limit=10, keepalive=0.05)
    async with serving(server) as base:
        await fetch(client, base)
        await asyncio.sleep(0.1)
        await fetch(client, base)
    assert server.connections == 2


async def test_at_most_limit_requests_are_in_flight():
    server = RawServer(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    client = UpstreamClient(limit=2)
    async with serving(server) as base:
        await asyncio.gather(*(fetch(client, base) for _ in range(10)))
    assert server.connections == 2
