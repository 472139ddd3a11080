"""A clock the test moves (DESIGN.md rule 7: time is an argument): pass it as `clock` to the code
under test, then `advance` it to make a retry, a lease or an expiry due — never sleep for one."""

from __future__ import annotations


class FakeClock:
    """`now` for the code under test, in epoch seconds: moved by the test, never by sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
