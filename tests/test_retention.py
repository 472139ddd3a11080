"""Retention: finished SMS older than the window are deleted in small batches, counted in
totals that survive them; nothing unfinished is ever pruned; `smsbridge prune` by hand; the
background job on the service's clock."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from smsbridge import retention, tasks
from smsbridge.cli.main import main
from smsbridge.inbound import messages as inbound
from smsbridge.loopback import wait_for
from smsbridge.outbound import delivery, reports
from smsbridge.outbound import messages as outgoing
from smsbridge.sms import DeliveryState, InboundSms, StatusUpdate
from smsbridge.store import Store, open_store
from tests.web.test_metrics import scrape

DAY = 86400.0
T0 = 1_700_000_000.0
NOW = T0 + 100 * DAY  # rows made at T0 are 100 days old
BEFORE = retention.cut_off(NOW, 90)


@pytest.fixture
def store(database: Path | str) -> Iterator[Store]:
    with open_store(database) as s:
        yield s


def _done(conn: sqlite3.Connection, kind: str, now: float) -> None:
    """Finish every task of `kind` (as a worker would after its step)."""
    while (task := tasks.claim_in(conn, [kind], now + 1, 60)) is not None:
        tasks.done_in(conn, task)


def add_inbound(store: Store, at: float, state: str, n: int = 1, *, task: bool = False) -> None:
    """`n` inbound SMS accepted at `at` and left in `state` (with their submit task if `task`)."""
    sms = [
        InboundSms("generic", f"in-{state}-{at}-{i}-{task}", "+254712000001", "P 1 Jane",
                   datetime.fromtimestamp(at, UTC))
        for i in range(n)
    ]  # fmt: skip

    def job(conn: sqlite3.Connection) -> None:
        for accepted in inbound.accept_in(conn, sms, at, 120):
            if state in ("submitted", "relayed"):
                inbound.set_outcome_in(conn, accepted.uuid, state, form=None, doc_id=None)
            elif state in ("rejected", "dead"):
                inbound.reject_in(conn, accepted.uuid, "r", "reply", dead=state == "dead")
        if not task:
            _done(conn, inbound.SUBMIT, at)

    store.write_sync(job)


def add_outgoing(
    store: Store, ref: str, at: float, state: DeliveryState, *, reported: bool = True
) -> None:
    """One CHT SMS created at `at`, sent through `generic` and taken to `state` (its send task
    done unless it stays queued); its status reports heard by CHT if `reported`."""

    def job(conn: sqlite3.Connection) -> None:
        outgoing.insert_in(conn, ref, "+254712000002", "Visit tomorrow", at)
        if state is DeliveryState.QUEUED:
            return
        delivery.accepted_in(conn, ref, "generic", "generic", f"ext-{ref}", DeliveryState.SENT, at)
        if state is DeliveryState.DELIVERED:
            delivery.delivery_report_in(conn, StatusUpdate("generic", f"ext-{ref}", state), at)
        elif state is DeliveryState.FAILED:
            message = outgoing.get_in(conn, ref)
            assert message is not None
            outgoing.advance_in(conn, message, state, at, reason="carrier said no")
        _done(conn, outgoing.SEND, at)

    store.write_sync(job)
    if reported:
        ids = [row_id for row_id, update in reports.owed_reports(store) if update["id"] == ref]
        store.write_sync(lambda conn: reports.mark_reported_in(conn, ids, at))


def add_unmatched_report(store: Store, at: float, external_id: str) -> None:
    update = StatusUpdate("generic", external_id, DeliveryState.DELIVERED)
    store.write_sync(lambda conn: delivery.delivery_report_in(conn, update, at))


def count(store: Store, table: str) -> int:
    return int(store.query(f"SELECT COUNT(*) FROM {table}")[0][0])


def states(store: Store, table: str) -> list[str]:
    return sorted(row[0] for row in store.query(f"SELECT state FROM {table}"))


def test_finished_rows_older_than_the_window_go_and_unfinished_ones_stay(store: Store) -> None:
    for state in ("submitted", "relayed", "rejected"):
        add_inbound(store, T0, state)  # finished, old: go
    add_inbound(store, NOW - DAY, "submitted")  # finished, recent: stays
    add_inbound(store, T0, "received", task=True)  # waiting for CHT: stays
    add_inbound(store, T0, "dead", task=True)  # a dead letter: stays
    add_inbound(store, T0, "submitted", task=True)  # a task still about it: stays
    add_outgoing(store, "delivered-old", T0, DeliveryState.DELIVERED)  # goes, with its reports
    add_outgoing(store, "failed-old", T0, DeliveryState.FAILED)  # goes
    add_outgoing(store, "delivered-new", NOW - DAY, DeliveryState.DELIVERED)  # recent: stays
    add_outgoing(store, "unheard", T0, DeliveryState.DELIVERED, reported=False)  # CHT owed: stays
    add_outgoing(store, "queued-old", T0, DeliveryState.QUEUED)  # never sent: stays
    add_unmatched_report(store, T0, "nobody-old")  # goes
    add_unmatched_report(store, NOW - DAY, "nobody-new")  # stays
    reports_before = count(store, "outgoing_reports")
    delivery_before = count(store, "delivery_reports")

    preview = retention.prunable(store, BEFORE)
    pruned = asyncio.run(retention.prune(store, BEFORE, NOW))

    assert pruned == preview
    assert pruned["messages"] == 3 and pruned["outgoing"] == 2
    assert states(store, "messages") == ["dead", "received", "submitted", "submitted"]
    left = sorted(row[0] for row in store.query("SELECT ref FROM outgoing"))
    assert left == ["delivered-new", "queued-old", "unheard"]
    # the reports of the two SMS that went went with them, and nothing else
    refs = {row[0] for row in store.query("SELECT ref FROM outgoing_reports")}
    assert refs == {"delivered-new", "queued-old", "unheard"}
    assert count(store, "outgoing_reports") == reports_before - pruned["outgoing_reports"]
    assert pruned["outgoing_reports"] > 0
    # delivered-old's report and the old unmatched one
    assert pruned["delivery_reports"] == 2
    assert count(store, "delivery_reports") == delivery_before - 2
    assert retention.totals(store) == pruned
    # a second run finds nothing more, and the totals stay
    assert set(asyncio.run(retention.prune(store, BEFORE, NOW)).values()) == {0}
    assert retention.totals(store) == pruned


def test_the_parts_of_a_joined_message_go_with_it(store: Store) -> None:
    parts = [
        InboundSms("vonage", f"part-{n}", "+254712000001", text, datetime.fromtimestamp(T0, UTC),
                   extra={"concat-ref": "7", "concat-total": "2", "concat-part": str(n)})
        for n, text in ((1, "P 1 "), (2, "Jane"))
    ]  # fmt: skip

    def job(conn: sqlite3.Connection) -> None:
        [_, whole] = inbound.accept_in(conn, parts, T0, 120)
        inbound.set_outcome_in(conn, whole.uuid, "submitted", form="P", doc_id="d")
        _done(conn, inbound.SUBMIT, T0)
        _done(conn, inbound.ASSEMBLE, T0 + inbound.PART_WAIT)

    store.write_sync(job)
    assert count(store, "inbound_parts") == 2
    pruned = asyncio.run(retention.prune(store, BEFORE, NOW))
    assert (pruned["messages"], pruned["inbound_parts"]) == (1, 2)
    assert count(store, "inbound_parts") == 0


def test_a_big_backlog_is_pruned_in_several_transactions(store: Store) -> None:
    add_inbound(store, T0, "submitted", n=35)
    commits = store.batches
    pruned = asyncio.run(retention.prune(store, BEFORE, NOW, batch=10))
    assert pruned["messages"] == 35 and count(store, "messages") == 0
    # 4 inbound batches (10, 10, 10, 5), then one for outgoing and one for unmatched reports
    assert store.batches - commits == 6


def test_retention_days_zero_keeps_everything(store: Store) -> None:
    add_inbound(store, T0, "submitted")
    assert asyncio.run(retention.Retention(store, 0).step(NOW)) is None
    assert count(store, "messages") == 1


def test_the_background_job_prunes_on_the_service_clock(bridge_factory) -> None:  # type: ignore[no-untyped-def]
    bridge = bridge_factory(start_workers=True, SMSBRIDGE_RETENTION_DAYS="2")
    start = bridge.clock.now
    add_inbound(bridge.store, start, "relayed", n=3)
    add_outgoing(bridge.store, "bg-1", start, DeliveryState.FAILED)
    time.sleep(0.3)  # the job has run at start-up: nothing was old enough
    assert count(bridge.store, "messages") == 3

    bridge.clock.advance(3 * DAY)
    wait_for(lambda: count(bridge.store, "messages") == 0, "old messages pruned")
    wait_for(lambda: count(bridge.store, "outgoing") == 0, "old outgoing SMS pruned")
    got = scrape(bridge.http.get("/metrics").text)
    assert got[("smsbridge_pruned_total", (("kind", "messages"),))] == 3
    assert got[("smsbridge_pruned_total", (("kind", "outgoing"),))] == 1
    assert got[("smsbridge_pruned_total", (("kind", "inbound_parts"),))] == 0


# -- smsbridge prune -------------------------------------------------------------------------------


def _cli_store(path: Path) -> None:
    old = time.time() - 100 * DAY
    with Store(path) as store:
        add_inbound(store, old, "submitted", n=2)
        add_inbound(store, old, "received", task=True)
        add_outgoing(store, "cli-1", old, DeliveryState.DELIVERED)


def test_prune_dry_run_counts_and_deletes_nothing(  # type: ignore[no-untyped-def]
    cli_database: Path, capsys
) -> None:
    _cli_store(cli_database)
    assert main(["prune", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete" in out
    assert "messages           2" in out and "outgoing           1" in out
    with Store(cli_database) as store:
        assert count(store, "messages") == 3 and count(store, "outgoing") == 1


def test_prune_deletes_and_prints_counts(cli_database: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    _cli_store(cli_database)
    assert main(["prune", "--older-than", "30"]) == 0
    out = capsys.readouterr().out
    assert "deleted" in out and "messages           2" in out
    with Store(cli_database) as store:
        assert states(store, "messages") == ["received"]
        assert count(store, "outgoing") == 0
        assert retention.totals(store)["messages"] == 2
    # a longer window than the rows' age: nothing more
    assert main(["prune", "--older-than", "365"]) == 0
    assert "messages           0" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--older-than", "-3"], ["--older-than", "abc"]])
def test_prune_refuses_bad_input_with_exit_2(cli_database: Path, argv: list[str]) -> None:
    _cli_store(cli_database)
    with pytest.raises(SystemExit) as exited:
        main(["prune", *argv])
    assert exited.value.code == 2


def test_prune_with_retention_off_needs_older_than(  # type: ignore[no-untyped-def]
    cli_database: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _cli_store(cli_database)
    monkeypatch.setenv("SMSBRIDGE_RETENTION_DAYS", "0")
    assert main(["prune"]) == 2
    assert "usage error" in capsys.readouterr().err


def test_prune_never_migrates(cli_database: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    conn = sqlite3.connect(cli_database)  # a database of an older schema version
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    assert main(["prune", "--dry-run"]) == 2
    conn = sqlite3.connect(cli_database)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()
