"""Connection limits (smsbridge/web/connections.py) on a real `smsbridge serve`: slow headers are
cut off after SMSBRIDGE_HEADER_TIMEOUT while webhooks go on being answered; oversized heads are
refused; connections over SMSBRIDGE_MAX_CONNECTIONS are turned away. Loopback only; every loop
is bounded in count and time."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_crash import TOKEN, Bridge

SLOW = 30  # slowloris connections
CAP = 60  # SMSBRIDGE_MAX_CONNECTIONS


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    running = Bridge(tmp_path_factory.mktemp("conn"), "http://127.0.0.1:9")
    running.env.update(
        SMSBRIDGE_HEADER_TIMEOUT="1",
        SMSBRIDGE_KEEPALIVE_TIMEOUT="1",
        SMSBRIDGE_MAX_CONNECTIONS=str(CAP),
    )
    running.start()
    yield running
    running.stop()


def connect(bridge: Bridge) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", bridge.port), timeout=5)
    sock.settimeout(5)
    return sock


def send(sock: socket.socket, data: bytes) -> None:
    """Send what the server takes: one refused before it has all is closed, which is fine."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def answer(sock: socket.socket) -> bytes:
    """What the server sends until it closes (b"" for a reset); at most 5 s."""
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def webhook(bridge: Bridge, n: int) -> httpx.Response:
    form = {"from": "+254700000001", "text": f"hello {n}", "id": f"conn-{n}"}
    return httpx.post(f"{bridge.url}/carriers/generic/{TOKEN}/inbound", data=form, timeout=5)


def test_slow_headers_are_cut_off_while_webhooks_are_answered(bridge: Bridge) -> None:
    slow = [connect(bridge) for _ in range(SLOW)]
    try:
        for sock in slow:  # a request line and one header, then nothing more
            sock.sendall(b"POST /carriers/generic/x/inbound HTTP/1.1\r\nHost: a\r\n")
        started = time.monotonic()
        assert webhook(bridge, 1).status_code == 200  # served meanwhile
        for sock in slow:
            sock.sendall(b"X-Slow: 1\r\n")  # trickling headers does not reset the deadline
        answers = [answer(sock) for sock in slow]
        elapsed = time.monotonic() - started
    finally:
        for sock in slow:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers[:3]
    assert elapsed < 4  # cut at the 1 s deadline, not at the client's 5 s timeout
    assert webhook(bridge, 2).status_code == 200


def test_an_idle_connection_is_closed_after_the_header_timeout(bridge: Bridge) -> None:
    sock = connect(bridge)
    started = time.monotonic()
    with sock:
        got = answer(sock)
    assert got.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 4


def test_an_idle_kept_alive_connection_is_closed(bridge: Bridge) -> None:
    with connect(bridge) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        first = b""
        while not first.endswith(b"}"):  # the whole first answer (its JSON body ends it)
            chunk = sock.recv(65536)
            assert chunk, first
            first += chunk
        started = time.monotonic()
        rest = answer(sock)
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest == b""  # closed, without a second answer
    assert time.monotonic() - started < 4


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: a\r\n"
        + b"".join(b"X-H%d: 1\r\n" % i for i in range(2000))
        + b"\r\n",
    ],
    ids=["100KB-header", "2000-headers"],
)
def test_oversized_heads_are_refused_with_431(bridge: Bridge, head: bytes) -> None:
    with connect(bridge) as sock:
        send(sock, head)
        got = answer(sock)
    assert got == b"" or got.startswith(b"HTTP/1.1 431 "), got[:100]
    assert webhook(bridge, 3).status_code == 200


def test_a_header_still_growing_past_the_cap_is_refused_before_it_ends(bridge: Bridge) -> None:
    with connect(bridge) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 200_000)
        got = answer(sock)  # no end of headers sent: the server must not wait for it
    assert got == b"" or got.startswith(b"HTTP/1.1 431 "), got[:100]


def test_connections_over_the_cap_are_turned_away_and_room_comes_back(bridge: Bridge) -> None:
    held = [connect(bridge) for _ in range(CAP)]
    try:
        time.sleep(0.2)  # all accepted by now
        with connect(bridge) as extra:
            send(extra, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            got = answer(extra)
        assert got == b"" or got.startswith(b"HTTP/1.1 503 "), got[:100]
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the server notices the closes
        try:
            if httpx.get(bridge.url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    assert httpx.get(bridge.url + "/healthz", timeout=2).status_code == 200


def test_limits_come_from_the_settings(tmp_path: Path) -> None:
    from smsbridge.carriers import load_settings
    from smsbridge.web.connections import URL_ALLOWANCE, Limits

    settings = load_settings(
        {
            "SMSBRIDGE_DATABASE": str(tmp_path / "x.db"),
            "SMSBRIDGE_HEADER_TIMEOUT": "7",
            "SMSBRIDGE_MAX_HEADER_BYTES": "1000",
            "SMSBRIDGE_MAX_HEADERS": "9",
            "SMSBRIDGE_MAX_CONNECTIONS": "12",
            "SMSBRIDGE_MAX_BODY_BYTES": "500",
        }
    )
    limits = Limits.from_settings(settings)
    assert limits == Limits(7.0, 1000, 9, 500 + URL_ALLOWANCE, 12)
