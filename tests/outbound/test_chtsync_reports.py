"""States owed to CHT under load (smsbridge/outbound/chtsync.py `report_owed`): a state owed
right after an exchange waits for one follow-up exchange shared with every state owed
meanwhile, instead of an exchange per state. Time is passed in."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from smsbridge.cht.client import ChtClient
from smsbridge.chtsim import ChtSim
from smsbridge.outbound import reports
from smsbridge.outbound.chtsync import REPORT_GAP, ChtSync
from smsbridge.sms import DeliveryState
from smsbridge.store import open_store

NOW = 1_800_000_000.0


def test_states_owed_right_after_an_exchange_share_one_follow_up(
    database: Path | str, chtsim: tuple[ChtSim, str]
) -> None:
    url = chtsim[1]
    wakes: list[str] = []

    async def play() -> None:
        async with ChtClient(url, ("admin", "pass"), timeout=10) as cht:
            with open_store(database) as store:
                sync = ChtSync(
                    store,
                    cht,
                    interval=30,
                    ttl=86400,
                    wake_sync=lambda: wakes.append("sync"),
                    wake_follow_up=lambda: wakes.append("follow-up"),
                )
                sync.report_owed(NOW)  # nothing exchanged yet: at once
                assert wakes == ["sync"]
                await sync.step(NOW)
                wakes.clear()
                for n in range(20):  # twenty states owed within the gap
                    sync.report_owed(NOW + 0.01 * (n + 1))
                assert wakes == ["follow-up"]  # one exchange planned, no exchange each
                assert sync.follow_up_wait(NOW + 0.2) <= REPORT_GAP
                await sync.follow_up(NOW + REPORT_GAP)  # the gap is over: exchange now
                assert wakes == ["follow-up", "sync"]
                sync.report_owed(NOW + REPORT_GAP + 1)  # long after the last exchange
                assert wakes == ["follow-up", "sync", "sync"]

    asyncio.run(play())


def test_a_clock_that_has_not_moved_exchanges_at_once(
    database: Path | str, chtsim: tuple[ChtSim, str]
) -> None:
    url = chtsim[1]
    wakes: list[str] = []

    async def play() -> None:
        async with ChtClient(url, ("admin", "pass"), timeout=10) as cht:
            with open_store(database) as store:
                sync = ChtSync(
                    store, cht, interval=30, ttl=86400, wake_sync=lambda: wakes.append("sync")
                )
                await sync.step(NOW)
                sync.report_owed(NOW)  # a test's clock, not moved since: no gap to time
                assert wakes == ["sync"]

    asyncio.run(play())


@pytest.mark.parametrize("heard", [0, 1, 99, 100, 101, 250])
def test_marking_reports_heard_marks_exactly_those(database: Path | str, heard: int) -> None:
    """`reports.mark_reported_in` (one statement per hundred reports) marks the reports it is
    given, and no other."""
    with open_store(database) as store:

        def owe(conn: Any) -> None:
            for n in range(300):
                reports.owe_in(conn, f"m-{n}", [DeliveryState.SENT], None, NOW)

        store.write_sync(owe)
        owed = reports.owed_reports(store, 300)
        chosen = [row_id for row_id, _ in owed][::-1][:heard]  # newest first, any order
        store.write_sync(lambda c: reports.mark_reported_in(c, chosen, NOW + 1))
        rows = store.query("SELECT id, reported_at FROM outgoing_reports ORDER BY id")
        assert {r[0] for r in rows if r[1] is not None} == set(chosen)
        assert all(r[1] == NOW + 1 for r in rows if r[1] is not None)
        assert len(reports.owed_reports(store, 300)) == 300 - heard
