"""A faithful CHT API simulator: the peer for tests, the demo and offline mode.

`ChtSim` holds the state and the test-control API; `ChtSim.app` is its ASGI app;
`running_chtsim(sim)` serves it on 127.0.0.1:<free port> and yields the URL.
"""

from smsbridge.chtsim.sim import ChtSim, running_chtsim

__all__ = ["ChtSim", "running_chtsim"]
