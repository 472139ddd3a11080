"""A clock the test moves (docs/architecture.md, rule 7: time is a parameter): pass it as `clock`
to the code under test, then `advance` it to make a retry, a lease or an expiry due — never sleep
for one. `event_loop()` is an asyncio loop on this clock, for code that bounds a wait with
`asyncio.timeout`: the timeout fires when the test moves the clock past it, not when real time
has passed (which a loaded machine makes a race)."""

from __future__ import annotations

import asyncio


class FakeClock:
    """`now` for the code under test, in epoch seconds: moved by the test, never by sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """A new event loop whose time is this clock: `asyncio.Runner(loop_factory=clock.
        event_loop)`. Its timers (`asyncio.sleep`, `asyncio.timeout`) are due only once the
        clock has been moved past them; I/O and thread hand-offs run as usual."""
        clock = self

        class _Loop(asyncio.SelectorEventLoop):
            def time(self) -> float:
                return clock.now

        return _Loop()
