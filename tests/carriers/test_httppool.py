"""The send side's HTTP client (smsbridge/carriers/httppool.py): the service's client keeps a
connection per send in flight, and each way a request can fail is still classified as
carriers/sending.py expects (unreachable: the SMS cannot have left; timeout or network: it may
have)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsbridge.carriers import load_settings
from smsbridge.carriers.httppool import LeanTransport
from smsbridge.carriers.httppool import client as send_client
from smsbridge.carriers.sending import request
from smsbridge.errors import RetryableError
from smsbridge.loopback import free_port
from smsbridge.service import build_service
from smsbridge.store import open_store
from tests.conftest import new_database

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's head and (Content-Length) body; b"" when the client closed."""
    head = b""
    while (line := await reader.readline()) not in (b"\r\n", b""):
        head += line
    if not head:
        return b""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return head


async def answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keep-alive: answer every request on the connection, after a short delay."""
    while await read_request(reader):
        await asyncio.sleep(0.02)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n" + b'{"id":"g-1"}')
        await writer.drain()
    writer.close()


async def with_server(handler: Handler, test: Callable[[str], Awaitable[None]]) -> list[int]:
    """Run `test(url)` against a server on 127.0.0.1; the client ports of its connections."""
    ports: list[int] = []
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ports.append(writer.get_extra_info("peername")[1])
        writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await handler(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await test(f"http://127.0.0.1:{port}")
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await asyncio.sleep(0.05)  # the closes take effect before the loop ends
    return ports


def test_the_services_send_client_keeps_one_connection_per_send_in_flight(
    tmp_path: Path,
) -> None:
    """64 sends in flight, 256 in all: 64 connections, each kept for the next send (httpx's
    default pool keeps 20 and opens a new connection for most sends)."""
    settings = load_settings(
        {
            "SMSBRIDGE_DATABASE": str(new_database(tmp_path)),
            "SMSBRIDGE_SEND_CONCURRENCY": "64",
        }
    )

    async def body() -> list[int]:
        store = open_store(settings.database)
        service = build_service(settings, store, None, clock=lambda: 0.0, rng=random.Random(1))  # type: ignore[arg-type]
        try:

            async def sends(url: str) -> None:
                slots = asyncio.Semaphore(64)

                async def one(i: int) -> None:
                    async with slots:
                        response = await service.http.post(f"{url}/send", json={"n": i})
                        assert response.status_code == 200
                        assert response.json() == {"id": "g-1"}

                await asyncio.gather(*(one(i) for i in range(256)))

            return await with_server(answer_ok, sends)
        finally:
            await service.http.aclose()
            await service.stop()
            store.close()

    ports = asyncio.run(body())
    assert len(ports) <= 64


def classify(handler: Handler | None, *, timeout: float = 5.0) -> RetryableError | int:
    """What a send meets against a server that runs `handler` (None: nothing listens)."""

    async def body() -> RetryableError | int:
        http = send_client(timeout=timeout, connections=4, proxies=lambda: False)
        outcome: list[RetryableError | int] = []

        async def send(url: str) -> None:
            try:
                response = await request(http, "generic", "POST", url + "/send", json={"a": 1})
                outcome.append(response.status_code)
            except RetryableError as exc:
                outcome.append(exc)

        try:
            if handler is None:
                await send(f"http://127.0.0.1:{free_port()}")
            else:
                await with_server(handler, send)
        finally:
            await http.aclose()
        return outcome[0]

    return asyncio.run(body())


def code(outcome: RetryableError | int) -> str:
    assert isinstance(outcome, RetryableError), outcome
    return outcome.code


def test_nothing_listening_is_unreachable() -> None:
    assert code(classify(None)) == "unreachable"


def test_a_connection_dropped_without_an_answer_is_a_network_error() -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    assert code(classify(drop)) == "network"


def test_an_answer_that_never_comes_is_a_timeout() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    assert code(classify(hang, timeout=0.3)) == "timeout"


def test_a_half_answer_is_a_network_error() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"id":')
        await writer.drain()
        writer.close()

    assert code(classify(half)) == "network"


@pytest.mark.parametrize("close", [True, False])
def test_chunked_gzip_and_read_to_close_answers_are_read_whole(close: bool) -> None:
    body = gzip.compress(b'{"id": "g-42"}')

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if close:  # no length, no chunks: the body ends with the connection
            writer.write(b"HTTP/1.1 201 Created\r\nContent-Encoding: gzip\r\n\r\n" + body)
        else:
            half = len(body) // 2
            writer.write(
                b"HTTP/1.1 201 Created\r\nContent-Encoding: gzip\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n" % (half, body[:half])
                + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - half, body[half:])
            )
        await writer.drain()
        writer.close()

    async def body_of() -> tuple[int, object]:
        http = send_client(timeout=5, connections=2, proxies=lambda: False)
        got: list[tuple[int, object]] = []

        async def send(url: str) -> None:
            response = await request(http, "generic", "POST", url + "/send", json={})
            got.append((response.status_code, response.json()))

        try:
            await with_server(chunked, send)
        finally:
            await http.aclose()
        return got[0]

    assert asyncio.run(body_of()) == (201, {"id": "g-42"})


def test_a_kept_connection_the_carrier_closed_meanwhile_is_not_reused() -> None:
    """The carrier closes an idle connection (its keep-alive timeout): the next send opens a
    new one instead of failing on the dead one (which would make the SMS ambiguous)."""

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()  # idle: closed, as servers do after their keep-alive timeout

    async def body() -> list[int]:
        http = send_client(timeout=5, connections=2, proxies=lambda: False)
        codes: list[int] = []

        async def sends(url: str) -> None:
            for _ in range(3):
                codes.append((await request(http, "generic", "POST", url + "/send")).status_code)
                await asyncio.sleep(0.2)

        try:
            ports = await with_server(once, sends)
        finally:
            await http.aclose()
        assert len(ports) == 3
        return codes

    assert asyncio.run(body()) == [200, 200, 200]


async def read_whole(reader: asyncio.StreamReader) -> bytes:
    """One request as it came on the wire: its head and its (Content-Length) body."""
    head = b""
    while (line := await reader.readline()) not in (b"\r\n", b""):
        head += line
    if not head:
        return b""  # the client closed
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + b"\r\n" + (await reader.readexactly(length) if length else b"")


def wire_of(make: Callable[[], httpx.AsyncClient], sends: list[dict[str, Any]]) -> list[bytes]:
    """The requests `make()`'s client puts on the wire for `sends` (each the arguments of one
    `request`), one connection kept alive; the carrier answers each with a cookie."""
    seen: list[bytes] = []

    async def carrier(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while wire := await read_whole(reader):
            seen.append(wire)
            writer.write(
                b"HTTP/1.1 200 OK\r\nSet-Cookie: lb=node-7; Path=/\r\n"
                b"Content-Type: application/json\r\nContent-Length: 12\r\n\r\n" + b'{"id":"g-1"}'
            )
            await writer.drain()
        writer.close()

    async def body() -> None:
        http = make()

        async def send(url: str) -> None:
            for kwargs in sends:
                response = await http.request(**{**kwargs, "url": url + kwargs["url"]})
                assert response.status_code == 200
                assert response.json() == {"id": "g-1"}
                assert response.request.url == httpx.URL(url + kwargs["url"]).copy_merge_params(
                    kwargs.get("params") or {}
                )

        try:
            await with_server(carrier, send)
        finally:
            await http.aclose()

    asyncio.run(body())
    return [re.sub(rb"127\.0\.0\.1:\d+", b"HOST", wire) for wire in seen]


SENDS: list[dict[str, Any]] = [
    {"method": "POST", "url": "/send", "json": {"to": "+254712345678", "text": "Habari ✓"}},
    {"method": "POST", "url": "/send", "data": {"to": "+254712345678", "text": "a&b=c"}},
    {"method": "GET", "url": "/sendsms", "params": {"to": "+2547", "text": "x y"}},
    {"method": "POST", "url": "/send", "headers": {"apiKey": "k-1"}, "content": b"raw"},
]


def test_the_send_client_puts_on_the_wire_what_httpx_would() -> None:
    """The lean client builds plain requests itself: byte for byte what httpx's own path over
    the same transport sends."""
    lean = wire_of(lambda: send_client(timeout=5, connections=2, proxies=lambda: False), SENDS)
    own = wire_of(
        lambda: httpx.AsyncClient(timeout=5, transport=LeanTransport(keep=2)),
        SENDS,
    )
    assert [w.split(b"\r\n")[0] for w in lean] == [
        b"POST /send HTTP/1.1",
        b"POST /send HTTP/1.1",
        b"GET /sendsms?to=%2B2547&text=x+y HTTP/1.1",
        b"POST /send HTTP/1.1",
    ]
    # httpx's own client sends back the carrier's cookie from the second request on
    assert [w.replace(b"Cookie: lb=node-7\r\n", b"") for w in own] == lean


def test_the_send_client_keeps_no_cookies_and_still_authenticates() -> None:
    """Each send stands alone: a cookie a carrier set is never sent back, on the lean path or
    on httpx's own (a request with `auth`, as Twilio's)."""
    sends = [SENDS[0], {**SENDS[1], "auth": ("AC1", "secret")}, SENDS[0]]
    wires = wire_of(lambda: send_client(timeout=5, connections=2, proxies=lambda: False), sends)
    assert len(wires) == 3
    assert not any(b"cookie:" in wire.lower() for wire in wires)
    assert b"Authorization: Basic QUMxOnNlY3JldA==\r\n" in wires[1]
    assert b"authorization" not in wires[0].lower() + wires[2].lower()


def test_closing_the_client_closes_a_connection_a_request_still_waits_on() -> None:
    """At shutdown a request nobody cancelled (CHT hanging) must not leave its connection open:
    closing the client closes it, and the request ends as a network error."""
    got_request = asyncio.Event()
    closed_by_client = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        got_request.set()
        if await reader.read() == b"":  # the client closed its end
            closed_by_client.set()

    async def body() -> str:
        http = send_client(timeout=30, connections=2, proxies=lambda: False)
        outcome: list[str] = []

        async def send(url: str) -> None:
            pending = asyncio.create_task(request(http, "generic", "POST", url + "/send"))
            await asyncio.wait_for(got_request.wait(), 5)
            await http.aclose()
            try:
                await asyncio.wait_for(pending, 5)
            except RetryableError as exc:
                outcome.append(exc.code)
            await asyncio.wait_for(closed_by_client.wait(), 5)

        await with_server(hang, send)
        return outcome[0]

    assert asyncio.run(body()) == "network"
