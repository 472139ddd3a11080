"""SMSBRIDGE_SEND_CONCURRENCY: sends in flight at once, so that a channel with no rate limit is
held back by its carrier's answer time, not by a few send loops of the bridge."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from smsbridge.carriers import load_settings
from smsbridge.carriersim import CarrierSim
from smsbridge.carriersim.sim import DEFAULT_CREDENTIALS
from smsbridge.chtsim import ChtSim
from smsbridge.loopback import serve_in_thread, wait_for
from smsbridge.settings import SettingsError

LATENCY = 1.0  # seconds the gateway takes to answer each send


def _sent_window(
    bridge_factory: Callable[..., Any], demo_sim: ChtSim, cht_url: str, total: int, **env: str
) -> float:
    """Seconds between the first and the last of `total` SMS reaching a gateway that answers
    each send after LATENCY seconds."""
    for n in range(total):
        demo_sim.add_outgoing(f"+2547{n:08d}", f"Clinic reminder number {n}")
    carriers = CarrierSim()
    carriers.configure("generic", latency=LATENCY, reports=False)
    with serve_in_thread(carriers.app) as sim_url:
        bridge_factory(
            cht_url=cht_url,
            start_workers=True,
            SMSBRIDGE_CARRIERS="generic",
            SMSBRIDGE_GENERIC_SEND_URL=sim_url + "/send",
            SMSBRIDGE_GENERIC_SEND_TOKEN=DEFAULT_CREDENTIALS["generic"][1],
            SMSBRIDGE_SYNC_INTERVAL="1",
            **env,
        )
        wait_for(lambda: len(carriers.sent_by("generic")) >= total, "every SMS sent", 30)
        stamps = sorted(s.at for s in carriers.sent_by("generic"))
    return stamps[-1] - stamps[0]


def test_sends_wait_on_the_carrier_side_by_side(
    bridge_factory: Callable[..., Any], demo_sim: ChtSim, demo_cht_url: str
) -> None:
    """12 SMS handed over in one CHT exchange all reach the gateway before its first answer
    (four send loops would need three answers: 3 s)."""
    window = _sent_window(
        bridge_factory, demo_sim, demo_cht_url, 12, SMSBRIDGE_SEND_CONCURRENCY="12"
    )
    assert window < LATENCY * 0.8


def test_send_concurrency_bounds_the_sends_in_flight(
    bridge_factory: Callable[..., Any], demo_sim: ChtSim, demo_cht_url: str
) -> None:
    """With 2 sends in flight at a time, 6 SMS take three answers of the gateway."""
    window = _sent_window(bridge_factory, demo_sim, demo_cht_url, 6, SMSBRIDGE_SEND_CONCURRENCY="2")
    assert window >= LATENCY * 1.8


def test_send_concurrency_is_a_positive_count() -> None:
    base = {"SMSBRIDGE_CHT_URL": "http://gateway:pass@127.0.0.1:9"}
    assert load_settings(base).send_concurrency == 64
    assert load_settings({**base, "SMSBRIDGE_SEND_CONCURRENCY": "8"}).send_concurrency == 8
    with pytest.raises(SettingsError, match="SMSBRIDGE_SEND_CONCURRENCY"):
        load_settings({**base, "SMSBRIDGE_SEND_CONCURRENCY": "0"})
