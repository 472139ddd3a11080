"""The carrier simulator the send-side carrier tests (tests/carriers/harness.py) talk to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smsbridge.carriersim import CarrierSim
from smsbridge.loopback import serve_in_thread


@pytest.fixture(scope="module")
def carriers() -> Iterator[tuple[CarrierSim, str]]:
    """The carrier simulator served on 127.0.0.1: `(sim, url)`, one per test module."""
    sim = CarrierSim()
    with serve_in_thread(sim.app) as url:
        yield sim, url


@pytest.fixture
def sim(carriers: tuple[CarrierSim, str]) -> CarrierSim:
    """`carriers`' simulator with no fault, outage or report pending and nothing sent."""
    s = carriers[0]
    for state in s.state.values():
        state.faults.clear()
        state.outage = None
        state.reports = False
        state.timeout_seconds = 1.0
    s.sends.clear()
    return s
