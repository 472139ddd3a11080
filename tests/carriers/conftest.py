"""The carrier simulator the send-side carrier tests (tests/carriers/harness.py) talk to: the
suite's `carriers` (tests/conftest.py), its `timeout` fault answering after 1 s."""

from __future__ import annotations

import pytest

from smsbridge.carriersim import CarrierSim


@pytest.fixture
def sim(carriers: tuple[CarrierSim, str]) -> CarrierSim:
    """`carriers`' simulator as new, posting no delivery reports, timing out in 1 s."""
    carriers[0].reset(reports=False, timeout_seconds=1.0)
    return carriers[0]
