"""Replies in seconds: CHT's automatic reply to a report leaves within seconds of the report,
not at the next periodic exchange (SMSBRIDGE_SYNC_INTERVAL, 30 s by default)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from smsbridge.loopback import wait_for
from smsbridge.sandbox import DEMO_SMS, DEMO_TOKEN
from tests.test_sandbox import ALICE, PROXIES, Served, clean_env


@pytest.mark.slow
def test_chts_reply_leaves_within_seconds_with_default_settings(tmp_path: Path) -> None:
    served = Served(tmp_path, clean_env(tmp_path, **PROXIES))  # the sandbox, defaults only
    try:
        wait_for(lambda: any("/_sim/records" in line for line in served.lines), "serve to start")
        cht = next(
            line.split("curl -s ", 1)[1].split("/_sim/records")[0]
            for line in served.lines
            if "/_sim/records" in line
        )
        webhook = f"http://127.0.0.1:{served.port}/carriers/generic/{DEMO_TOKEN}/inbound"
        # let the first periodic exchange pass, so the reply cannot ride on it by luck
        time.sleep(1.0)
        sent = time.monotonic()
        response = httpx.post(webhook, data={"from": ALICE, "text": DEMO_SMS}, timeout=10)
        assert response.status_code == 200

        def reply_delivered() -> bool:
            messages = httpx.get(f"{cht}/_sim/messages", timeout=5).json()
            return any(m["to"] == ALICE and m["state"] == "delivered" for m in messages)

        wait_for(reply_delivered, "CHT's reply delivered", timeout=20)
        assert time.monotonic() - sent < 6.0  # the periodic exchange would take up to 30 s
    finally:
        served.stop()


def test_follow_up_exchanges_are_planned_once_for_a_burst_and_wake_the_sync_when_due() -> None:
    import asyncio

    from smsbridge.outbound.chtsync import FOLLOW_UPS, IDLE_WAIT, ChtSync

    woken: list[str] = []
    sync = ChtSync(
        None,  # type: ignore[arg-type]  (no exchange happens here)
        None,  # type: ignore[arg-type]
        interval=30,
        ttl=86400,
        wake_sync=lambda: woken.append("sync"),
        wake_follow_up=lambda: woken.append("plan"),
    )
    t0 = 1_000.0
    assert sync.follow_up_wait(t0) == IDLE_WAIT
    for n in range(20):  # a burst of accepted reports within 0.2 s
        sync.expedite(t0 + n * 0.01)
    assert sync.follow_ups == [t0 + d for d in FOLLOW_UPS]  # coalesced: one per follow-up
    assert woken == ["plan"]
    assert sync.follow_up_wait(t0) == FOLLOW_UPS[0]
    asyncio.run(sync.follow_up(t0 + 0.5))
    assert woken == ["plan"]  # not yet due
    asyncio.run(sync.follow_up(t0 + FOLLOW_UPS[0]))
    assert woken == ["plan", "sync"] and sync.follow_ups == [t0 + FOLLOW_UPS[1]]
    sync.expedite(t0 + 10)  # a later report plans its own
    assert sync.follow_ups == [t0 + FOLLOW_UPS[1], t0 + 10 + FOLLOW_UPS[0], t0 + 10 + FOLLOW_UPS[1]]
