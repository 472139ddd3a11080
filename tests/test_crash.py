"""Crash safety: `smsbridge serve` runs as a subprocess, the bridge is killed with SIGKILL
mid-stream and restarted on the same database. Inbound: every message it acknowledged reaches the
CHT simulator (which lives in this process, on a fixed port, across the restart) exactly once.
Outbound: no SMS reaches the carrier simulator twice, though the kill caught sends the carrier
had accepted but whose answer the bridge never stored (outbound/send.py: no blind resend)."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from smsbridge.carriersim import CarrierSim
from smsbridge.carriersim.sim import DEFAULT_CREDENTIALS
from smsbridge.chtsim import ChtSim
from smsbridge.chtsim.demo_data import CHW_PHONES
from smsbridge.loopback import free_port, serve_in_thread, wait_for
from tests.orphans import dies_with_parent

TOKEN = "crash-test-token-0123456789"
SENDERS = list(CHW_PHONES.values())


def text_of(n: int) -> str:
    """Form reports (records path) and plain texts (relay path), each text unique."""
    return f"P {n % 40 + 1} Mother{n}" if n % 3 else f"note number {n} from the field"


class Bridge:
    def __init__(self, tmp_path: Path, cht_url: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (tmp_path / "bridge.log").open("ab")
        self.env = {
            **os.environ,
            "SMSBRIDGE_DATABASE": str(tmp_path / "bridge.db"),
            "SMSBRIDGE_CHT_URL": cht_url,
            "SMSBRIDGE_CARRIERS": "generic",
            "SMSBRIDGE_GENERIC_WEBHOOK_TOKEN": TOKEN,
            "SMSBRIDGE_LEASE_SECONDS": "2",  # a killed worker's claim expires quickly
            "SMSBRIDGE_RETRY_BASE": "0.2",
            "SMSBRIDGE_LOG_LEVEL": "WARNING",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.launch()
        self.wait_started()

    def launch(self) -> None:
        """The bridge's process, started from this thread: it dies with this THREAD (the
        parent-death signal follows the thread that started it), so launch from the test's
        own thread, never from a pool's."""
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "smsbridge",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=self.env,
            stdout=self.log,
            stderr=self.log,
            preexec_fn=dies_with_parent(),  # a killed test run leaves no bridge behind
        )

    def wait_started(self) -> None:
        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "bridge exited at start-up"
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, "the bridge to start", timeout=30)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.mark.slow
def test_every_acknowledged_message_reaches_cht_exactly_once_across_sigkill(
    tmp_path: Path, demo_sim: ChtSim, demo_cht_url: str
) -> None:
    bridge = Bridge(tmp_path, demo_cht_url)
    total, kill_after = 600, 250
    acked: set[int] = set()
    lock = threading.Lock()
    killed = threading.Event()
    try:
        bridge.start()
        inbound = f"{bridge.url}/carriers/generic/{TOKEN}/inbound"

        def send(n: int) -> None:
            if killed.is_set() and n % 2:  # keep some traffic going into the dead port
                return
            form = {"from": SENDERS[n % len(SENDERS)], "text": text_of(n), "id": f"m-{n}"}
            try:
                response = client.post(inbound, data=form)
            except httpx.HTTPError:
                return
            if response.status_code == 200:
                with lock:
                    acked.add(n)
                    count = len(acked)
                if count == kill_after and not killed.is_set():
                    killed.set()
                    bridge.kill()  # mid-stream: other requests are in flight right now

        with (
            httpx.Client(timeout=5) as client,
            concurrent.futures.ThreadPoolExecutor(12) as pool,
        ):
            list(pool.map(send, range(total)))
        assert killed.is_set()
        acked_before_restart = set(acked)
        assert len(acked_before_restart) >= kill_after
        with sqlite3.connect(bridge.env["SMSBRIDGE_DATABASE"]) as db:
            left = db.execute("SELECT COUNT(*) FROM messages WHERE state = 'received'").fetchone()
        assert left[0] > 0  # the kill left acknowledged work for the restarted bridge

        bridge.start()
        expected = Counter(text_of(n) for n in acked_before_restart)

        def arrived() -> Counter[str]:
            texts = Counter((r.get("sms_message") or {}).get("message") for r in demo_sim.records())
            return texts

        def all_arrived() -> bool:
            got = arrived()  # once per look, not once per message
            return all(got[t] >= 1 for t in expected)

        wait_for(all_arrived, "every message in CHT", 90)
        got = arrived()
        missing = [t for t in expected if got[t] == 0]
        assert not missing, f"{len(missing)} acknowledged messages never reached CHT"
        doubled = {t: c for t, c in got.items() if c > 1}
        assert not doubled, f"reported more than once: {doubled}"
        # nothing the bridge did not acknowledge was invented either
        assert set(got) - {None} <= {text_of(n) for n in range(total)}
    finally:
        bridge.stop()


def _states(database: str) -> dict[str, tuple[str, str | None]]:
    """ref -> (state, carrier's id) of every outgoing SMS in the bridge's database."""
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT ref, state, external_id FROM outgoing").fetchall()
    return {ref: (state, external) for ref, state, external in rows}


@pytest.mark.slow
def test_a_send_caught_by_sigkill_is_never_sent_twice_and_every_sms_is_delivered(
    tmp_path: Path, demo_sim: ChtSim, demo_cht_url: str
) -> None:
    """The generic gateway accepts each SMS, answers 0.3 s later, and reports delivery (with our
    reference) 8 s later, long after the 2 s lease: the kill leaves sends the gateway took whose
    answer was never stored. Today's bridge would send each of those again once its lease ran
    out; an ambiguous send waits for its report instead."""
    total = 60
    refs = {
        demo_sim.add_outgoing(f"+2547{n:08d}", f"Clinic reminder number {n}") for n in range(total)
    }
    carriers = CarrierSim()
    carriers.configure("generic", latency=0.3, report_delay=8.0, report_retry_for=60.0)
    with serve_in_thread(carriers.app) as sim_url:
        port = free_port()
        bridge = Bridge(
            tmp_path,
            demo_cht_url,
            SMSBRIDGE_PUBLIC_URL=f"http://127.0.0.1:{port}",
            SMSBRIDGE_GENERIC_SEND_URL=sim_url + "/send",
            SMSBRIDGE_GENERIC_SEND_TOKEN=DEFAULT_CREDENTIALS["generic"][1],
            SMSBRIDGE_SYNC_INTERVAL="1",
            SMSBRIDGE_AMBIGUOUS_GRACE="30",
        )
        bridge.port, bridge.url = port, f"http://127.0.0.1:{port}"
        database = bridge.env["SMSBRIDGE_DATABASE"]
        try:
            bridge.start()
            wait_for(lambda: len(carriers.sent_by("generic")) >= 12, "a send burst", 60)
            bridge.kill()
            states = _states(database)
            caught = [
                ref
                for ref in carriers.sends_per_ref("generic")
                if states.get(str(ref), ("?", None))[0] in ("queued", "sending")
            ]
            assert caught, "the kill caught no send the gateway had taken: nothing was tested"

            bridge.start()

            def all_delivered() -> bool:
                states = _states(database)
                return len(states) == total and all(s == "delivered" for s, _ in states.values())

            wait_for(all_delivered, "every SMS delivered", 90)
            per_ref = carriers.sends_per_ref("generic")
            twice = {ref: n for ref, n in per_ref.items() if n > 1}
            assert not twice, f"sent twice after the kill (caught in flight: {caught}): {twice}"
            assert set(per_ref) == refs  # every SMS went out, under its own reference
        finally:
            bridge.stop()
