"""The carrier simulator's callback sender (smsbridge/carriersim/callbacks.py): delivery reports
go over a few kept-alive connections, in order per SMS, and survive a peer that drops an idle
connection."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from smsbridge.carriersim import CarrierSim
from smsbridge.carriersim.callbacks import CallbackClient, CallbackError
from smsbridge.carriersim.sim import REPORT_CONNECTIONS
from smsbridge.loopback import free_port, serve_in_thread, wait_for


class Peers:
    """A delivery-report endpoint that answers slowly (so reports overlap) and records each
    report with the client port it came from (one port per connection)."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, str, str]] = []  # (client port, our ref, status)
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/dlr", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        body = await request.json()
        await asyncio.sleep(0.05)
        assert request.client is not None
        with self.lock:
            self.reports.append((request.client.port, body["ref"], body["status"]))
        return JSONResponse({"ok": True})


@pytest.fixture
def peers() -> Iterator[tuple[Peers, str]]:
    receiver = Peers()
    with serve_in_thread(receiver.app) as url:
        yield receiver, url


def test_a_burst_of_reports_shares_a_few_kept_alive_connections(
    peers: tuple[Peers, str],
) -> None:
    receiver, url = peers
    sim = CarrierSim()
    token = sim.credentials["generic"][1]
    count = 60
    with serve_in_thread(sim.app) as sim_url:

        async def send_all() -> None:
            async with httpx.AsyncClient(timeout=10) as client:

                async def one(i: int) -> None:
                    response = await client.post(
                        f"{sim_url}/send",
                        json={"to": f"+25471{i:07d}", "text": "hi", "id": f"ref-{i}"},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert response.status_code == 200

                sim.set_callback("generic", f"{url}/dlr")
                await asyncio.gather(*(one(i) for i in range(count)))

        asyncio.run(send_all())
        wait_for(lambda: len(receiver.reports) >= 2 * count, what="every report", timeout=20)
    with receiver.lock:
        reports = list(receiver.reports)
    assert len(reports) == 2 * count
    for i in range(count):  # each SMS: sent, then its final state
        assert [s for _port, ref, s in reports if ref == f"ref-{i}"] == ["sent", "delivered"]
    ports = {port for port, _ref, _status in reports}
    # a connection per report (or per report in flight, with idle ones closed) would use ~120
    assert len(ports) <= REPORT_CONNECTIONS


def test_a_kept_alive_connection_the_peer_dropped_is_replaced() -> None:
    """A peer that closes each connection after its answer (without saying so): the next report
    finds the kept connection dead and goes over a new one, once."""
    answers: list[int] = []

    async def scenario() -> tuple[list[int], list[int]]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            answers.append(1)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()  # no "Connection: close": the client believes it may keep it

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = CallbackClient(connections=2)
        codes = []
        for _ in range(3):
            codes.append(await client.request("POST", f"http://127.0.0.1:{port}/x"))
            await asyncio.sleep(0.05)  # the close reaches the client
        await client.aclose()
        server.close()
        return codes, answers

    codes, served = asyncio.run(scenario())
    assert codes == [200, 200, 200]
    assert len(served) == 3  # each report written once


def test_a_report_nobody_answers_is_an_error_not_a_hang() -> None:
    client_port = free_port()  # nothing listens there

    async def scenario() -> None:
        client = CallbackClient(connections=1, timeout=2)
        started = time.monotonic()
        with pytest.raises(CallbackError):
            await client.request("POST", f"http://127.0.0.1:{client_port}/x", json={"a": 1})
        assert time.monotonic() - started < 2
        await client.aclose()

    asyncio.run(scenario())
