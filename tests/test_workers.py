"""The parts every pool of background workers is made of (smsbridge/workers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from smsbridge.postgres.connection import DatabaseUnavailable
from smsbridge.workers import Wakeup, claim_loop, survive


def test_survive_gives_the_step_s_result() -> None:
    async def step() -> int:
        return 42

    assert asyncio.run(survive(step, "test_error")) == 42


def test_survive_logs_a_bug_and_gives_none(caplog: pytest.LogCaptureFixture) -> None:
    async def step() -> int:
        raise KeyError("secret detail")

    with caplog.at_level(logging.INFO, logger="smsbridge.workers"):
        assert asyncio.run(survive(step, "test_error")) is None
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "event=test_error error=KeyError"


def test_survive_says_an_outage_in_one_line_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database out for a moment (a 503 to a webhook, DatabaseUnavailable in a worker) is
    no bug: a WARNING naming it, no ERROR, no traceback."""

    async def step() -> int:
        raise DatabaseUnavailable()

    with caplog.at_level(logging.INFO, logger="smsbridge.workers"):
        assert asyncio.run(survive(step, "test_error")) is None
    [record] = caplog.records
    assert record.levelno == logging.WARNING and not record.exc_info
    assert record.getMessage() == "event=test_error error=unavailable"


def test_a_worker_outlives_a_bug_and_goes_on_claiming() -> None:
    outcomes = iter([RuntimeError("bug"), True, False])
    calls: list[float] = []
    third_call = asyncio.Event()

    async def run_once(now: float) -> bool:
        calls.append(now)
        if len(calls) == 3:
            third_call.set()
        outcome = next(outcomes, False)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def body() -> None:
        worker = asyncio.create_task(claim_loop(run_once, lambda: 7.0, Wakeup(), 0.01, "test"))
        await asyncio.wait_for(third_call.wait(), 10)
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker

    asyncio.run(body())
    assert calls[:3] == [7.0, 7.0, 7.0]


def test_a_wait_ends_after_its_timeout_and_a_later_wakeup_is_kept() -> None:
    async def flow() -> tuple[float, float]:
        wakeup = Wakeup()
        started = time.monotonic()
        await wakeup.wait(0.05)  # nobody wakes it: the timer ends the wait
        waited = time.monotonic() - started
        wakeup.set()  # nobody waits now: kept for the next wait, not lost on a stale waiter
        started = time.monotonic()
        await wakeup.wait(10.0)
        return waited, time.monotonic() - started

    waited, second = asyncio.run(flow())
    assert 0.04 <= waited < 2.0
    assert second < 1.0


def test_a_wakeup_wakes_one_waiter_each() -> None:
    async def flow() -> list[list[int]]:
        wakeup = Wakeup()
        woke: list[int] = []

        async def worker(n: int) -> None:
            await wakeup.wait(10.0)
            woke.append(n)

        workers = [asyncio.create_task(worker(n)) for n in range(3)]
        await asyncio.sleep(0.01)  # all three wait
        seen = []
        for _ in range(3):
            wakeup.set()
            await asyncio.sleep(0.01)
            seen.append(sorted(woke))
        await asyncio.gather(*workers)
        return seen

    first, second, third = asyncio.run(flow())
    assert len(first) == 1 and len(second) == 2 and third == [0, 1, 2]


def test_a_cancelled_wait_does_not_swallow_the_next_wakeup() -> None:
    async def flow() -> float:
        wakeup = Wakeup()
        gone = asyncio.create_task(wakeup.wait(10.0))
        await asyncio.sleep(0.01)
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone
        wakeup.set()  # the cancelled waiter is gone: this wake-up is kept
        started = time.monotonic()
        await wakeup.wait(10.0)
        return time.monotonic() - started

    assert asyncio.run(flow()) < 1.0
