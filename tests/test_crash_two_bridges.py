"""Two `smsbridge serve` processes on one PostgreSQL database (the run's server,
tests/postgres.py), with the CHT and carrier simulators as peers: 2,000 webhooks spread over
both (a failed one retried on the other, as carrier and load balancer would), the carrier's
delivery reports through a load balancer in front of both; one bridge killed with SIGKILL
mid-way and never restarted. Every SMS a bridge acknowledged reaches CHT exactly once; every
SMS CHT wanted sent (before the kill and after it) reaches the carrier exactly once and is
delivered: the dead bridge's leases taken over by the survivor, the delivery reports of its
sends applied there, and the CHT sync run there."""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsbridge.carriersim import CarrierSim
from smsbridge.carriersim.sim import DEFAULT_CREDENTIALS
from smsbridge.chtsim import ChtSim
from smsbridge.chtsim.demo_data import REPLIES
from smsbridge.loopback import serve_in_thread, wait_for
from tests.test_crash import SENDERS, TOKEN, Bridge, text_of

WEBHOOKS = 2000
KILL_AFTER = 800  # acknowledged webhooks before one bridge dies
FEED = 20  # outgoing SMS CHT queues per second, from the start until a while after the kill
FEED_MAX = 2000
_HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


class Balancer:
    """A load balancer in front of the bridges (an ASGI app), as nginx with two upstreams:
    round robin; a bridge that refuses the connection is skipped (the request never reached
    it); any other failure answers 502 (it may have been processed: the sender retries)."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self.turn = itertools.count()
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, headers, content = await self._forward(scope, body)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _forward(
        self, scope: dict[str, Any], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64))
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope["path"] + (f"?{query}" if query else "")
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in _HOP_BY_HOP
        ]
        first = next(self.turn)
        for i in range(len(self.backends)):
            backend = self.backends[(first + i) % len(self.backends)]
            try:
                reply = await self._client.request(
                    scope["method"], backend + target, headers=headers, content=body
                )
            except httpx.ConnectError:
                continue
            except httpx.HTTPError:
                break
            kept = [
                (k.encode("latin-1"), v.encode("latin-1"))
                for k, v in reply.headers.multi_items()
                if k.lower() not in _HOP_BY_HOP and k.lower() != "content-encoding"
            ]
            return reply.status_code, kept, reply.content
        return 502, [(b"content-type", b"text/plain")], b"bad gateway"

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _open_attempts(url: str) -> list[str]:
    """The outgoing SMS whose send attempt is open (the carrier called, no answer stored)."""
    import psycopg

    with psycopg.connect(url) as db:
        rows = db.execute("SELECT ref FROM outgoing WHERE attempt_started_at IS NOT NULL")
        return [ref for (ref,) in rows.fetchall()]


def _outgoing_states(url: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(url) as db:
        return dict(db.execute("SELECT ref, state FROM outgoing").fetchall())


@pytest.mark.slow
def test_two_bridges_one_killed_nothing_lost_nothing_doubled(
    tmp_path: Path, demo_sim: ChtSim, demo_cht_url: str, pg_database: str
) -> None:
    for form in REPLIES:  # CHT's replies would go to three numbers: the loop guard holds them
        demo_sim.set_auto_reply(form, None)
    fed: list[str] = []  # what CHT wants sent: a steady stream, so the kill catches sends
    feeding = threading.Event()

    def feed() -> None:
        while len(fed) < FEED_MAX and not feeding.wait(0.1):
            for _ in range(FEED // 10):
                n = len(fed)
                fed.append(demo_sim.add_outgoing(f"+2547{n:08d}", f"Clinic reminder {n}"))

    feeder = threading.Thread(target=feed, name="cht-feeder", daemon=True)
    carriers = CarrierSim()
    # each send answered after 0.3 s (kills catch sends in flight), reported 1 s later through
    # the balancer (so to whichever bridge lives), the report retried while it is refused
    carriers.configure("generic", latency=0.3, report_delay=1.0, report_retry_for=60.0)
    bridges: list[Bridge] = []
    acked: set[int] = set()
    lock = threading.Lock()
    with serve_in_thread(carriers.app) as carrier_url:
        homes = [tmp_path / "a", tmp_path / "b"]  # each bridge's log
        for home in homes:
            home.mkdir()
        bridges = [
            Bridge(
                home,
                demo_cht_url,
                SMSBRIDGE_DATABASE=pg_database,
                SMSBRIDGE_GENERIC_SEND_URL=carrier_url + "/send",
                SMSBRIDGE_GENERIC_SEND_TOKEN=DEFAULT_CREDENTIALS["generic"][1],
                SMSBRIDGE_SYNC_INTERVAL="1",
                # a send in flight at the kill is settled by its report (1 s after the carrier
                # took it); one the kill stopped before it reached the carrier has none, and is
                # sent once when the grace is over, within the test's wait
                SMSBRIDGE_AMBIGUOUS_GRACE="15",
            )
            for home in homes
        ]
        balancer = Balancer([b.url for b in bridges])
        with serve_in_thread(balancer) as lb_url:
            for bridge in bridges:
                bridge.env["SMSBRIDGE_PUBLIC_URL"] = lb_url  # delivery reports come back here
            victim = bridges[0]
            try:
                for bridge in bridges:  # both start at once, each launched from this thread
                    bridge.launch()
                for bridge in bridges:
                    bridge.wait_started()
                feeder.start()
                inbound = [f"{b.url}/carriers/generic/{TOKEN}/inbound" for b in bridges]

                def post(n: int) -> None:
                    """To bridge n % 2, else (it failed) to the other: a carrier retries until
                    acknowledged, a load balancer moves a retry to a bridge that answers."""
                    form = {"from": SENDERS[n % len(SENDERS)], "text": text_of(n), "id": f"m-{n}"}
                    for attempt in range(10):
                        try:
                            reply = client.post(inbound[(n + attempt) % 2], data=form)
                        except httpx.HTTPError:
                            continue
                        if reply.status_code == 200:
                            with lock:
                                acked.add(n)
                            return

                with (
                    httpx.Client(timeout=10) as client,
                    concurrent.futures.ThreadPoolExecutor(8) as pool,
                ):
                    posted = [pool.submit(post, n) for n in range(WEBHOOKS)]
                    wait_for(lambda: len(acked) >= KILL_AFTER, "webhooks before the kill", 120)
                    victim.kill()
                    killed_at, fed_at_kill = len(acked), len(fed)
                    caught = _open_attempts(pg_database)  # sends in flight, the victim's among them
                    for future in posted:
                        future.result()
                    time.sleep(2)  # CHT queues more after the kill: the survivor's sync takes them
                    feeding.set()
                    feeder.join()
                assert killed_at < WEBHOOKS - 200, "the kill came after the flood"
                assert caught, "the kill caught no send in flight: the outbound side was not tested"
                assert 0 < fed_at_kill < len(fed)

                # inbound: every acknowledged SMS in CHT, once
                expected = Counter(text_of(n) for n in acked)
                assert len(acked) == WEBHOOKS  # every webhook was acknowledged in the end

                def arrived() -> Counter[str | None]:
                    return Counter(
                        (r.get("sms_message") or {}).get("message") for r in demo_sim.records()
                    )

                wait_for(lambda: set(expected) <= set(arrived()), "every SMS in CHT", 120)
                got = arrived()
                doubled = {t: c for t, c in got.items() if c > 1}
                assert not doubled, f"reported to CHT more than once: {doubled}"

                # outbound: every SMS CHT wanted sent, sent once and delivered
                def wanted() -> set[str]:
                    return {m["id"] for m in demo_sim.messages()}

                def all_delivered() -> bool:
                    states, refs = _outgoing_states(pg_database), wanted()
                    return refs <= set(states) and all(states[r] == "delivered" for r in refs)

                wait_for(all_delivered, "every outgoing SMS delivered", 120)
                per_ref = carriers.sends_per_ref("generic")
                assert wanted() == set(fed)
                assert set(per_ref) == wanted()
                twice = {ref: n for ref, n in per_ref.items() if n > 1}
                assert not twice, (
                    f"sent more than once ({len(caught)} in flight at the kill): {twice}"
                )
                assert victim.proc is not None and victim.proc.poll() is not None  # stayed dead
            finally:
                feeding.set()
                for bridge in bridges:
                    bridge.stop()
