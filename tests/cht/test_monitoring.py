"""CHT's own outgoing backlog (`/api/v2/monitoring`) exported as `smsbridge_cht_outgoing{state}`:
read on the service's clock, absent while CHT's answer is unusable, back when it is."""

from __future__ import annotations

from typing import Any

import pytest

from smsbridge.cht.monitoring import READ_EVERY, outgoing_backlog
from smsbridge.chtsim import ChtSim
from smsbridge.loopback import wait_for
from tests.web.test_metrics import scrape


def backlog(bridge: Any) -> dict[str, float]:  # type: ignore[no-untyped-def]
    got = scrape(bridge.http.get("/metrics").text)
    return {
        dict(labels)["state"]: value
        for (name, labels), value in got.items()
        if name == "smsbridge_cht_outgoing"
    }


def test_chts_outgoing_backlog_is_exported_by_state(  # type: ignore[no-untyped-def]
    bridge_factory, chtsim: tuple[ChtSim, str]
) -> None:
    sim, url = chtsim
    for n in range(2):
        sim.add_outgoing("+254712000001", f"due {n}", state="muted" if n else "pending")
    sim.add_outgoing("+254712000001", "later", scheduled=True, state="scheduled")
    sim.add_outgoing("+254712000001", "muted", state="muted")
    bridge = bridge_factory(
        cht_url=url.replace("http://", "http://admin:pass@"), start_workers=True
    )
    expected = {"due": 1.0, "scheduled": 1.0, "muted": 2.0}
    wait_for(lambda: backlog(bridge) == expected, f"CHT's backlog {expected}")

    sim.faults.monitoring_broken = True  # CHT answers -1 for every count
    bridge.clock.advance(READ_EVERY)
    wait_for(lambda: backlog(bridge) == {}, "the series gone while CHT's numbers are unusable")

    sim.faults.monitoring_broken = False
    sim.add_outgoing("+254712000001", "another", state="pending")
    bridge.clock.advance(READ_EVERY)
    expected = {"due": 2.0, "scheduled": 1.0, "muted": 2.0}
    wait_for(lambda: backlog(bridge) == expected, f"CHT's backlog {expected}")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (  # v2
            {"messaging": {"outgoing": {"total": {"due": 3, "scheduled": 0, "muted": 1}}}},
            {"due": 3, "scheduled": 0, "muted": 1},
        ),
        (  # v1
            {"messaging": {"outgoing": {"state": {"due": 1, "scheduled": 2, "muted": 0}}}},
            {"due": 1, "scheduled": 2, "muted": 0},
        ),
        ({"messaging": {"outgoing": {"total": {"due": -1, "scheduled": 0, "muted": 0}}}}, None),
        ({"messaging": {"outgoing": {"total": {"due": 1, "scheduled": 0}}}}, None),
        ({}, None),
    ],
)
def test_the_backlog_is_read_from_chts_answer(body: dict[str, Any], expected: Any) -> None:
    assert outgoing_backlog(body) == expected
