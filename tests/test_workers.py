"""The parts every pool of background workers is made of (smsbridge/workers.py)."""

from __future__ import annotations

import asyncio
import logging

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
