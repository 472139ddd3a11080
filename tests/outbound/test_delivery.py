"""Delivery reports through the bridge's status webhooks (outbound/delivery.py): bound to the
carrier whose endpoint received them, unknown ones logged and counted, a success clearing an
earlier failure reason; and what `outbox ls --ref` shows of a sent SMS."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from smsbridge.cli.main import main
from smsbridge.outbound import delivery, reports
from smsbridge.outbound import messages as outgoing
from smsbridge.sms import DeliveryState, StatusUpdate
from smsbridge.store import open_store
from tests.conftest import RunningBridge
from tests.web.test_metrics import scrape

NOW = 1_800_000_000.0


def _status_path(bridge: RunningBridge, carrier: str) -> str:
    return bridge.inbound_path(carrier).replace("/inbound", "/status")


def _sent(bridge: RunningBridge, ref: str, carrier: str, external_id: str) -> None:
    """An outgoing SMS that `carrier` accepted under `external_id`."""
    now = bridge.clock()

    def job(conn: Any) -> None:
        outgoing.insert_in(conn, ref, "+254712345678", "Visit tomorrow", now)
        delivery.accepted_in(conn, ref, carrier, carrier, external_id, DeliveryState.SENT, now)

    bridge.store.write_sync(job)


def _state(bridge: RunningBridge, ref: str) -> DeliveryState:
    message = outgoing.get(bridge.store, ref)
    assert message is not None
    return message.state


def test_one_carriers_token_cannot_move_another_carriers_sms(bridge: RunningBridge) -> None:
    _sent(bridge, "via-at", "africastalking", "ATXid_real")
    _sent(bridge, "via-generic", "generic", "g-real")
    forged = {"ref": "via-at", "status": "failed", "reason": "forged"}
    assert bridge.http.post(_status_path(bridge, "generic"), data=forged).status_code == 200
    assert _state(bridge, "via-at") is DeliveryState.SENT
    # AT's endpoint: a made-up id beside a real ref of an SMS sent through another carrier
    bogus = {"id": "ATXid_bogus", "ref": "via-generic", "status": "Failed"}
    assert bridge.http.post(_status_path(bridge, "africastalking"), data=bogus).status_code == 200
    assert _state(bridge, "via-generic") is DeliveryState.SENT
    # ... nor a real ref of one of AT's own: AT's reports name AT's id only
    bogus = {"id": "ATXid_bogus", "ref": "via-at", "status": "Failed"}
    assert bridge.http.post(_status_path(bridge, "africastalking"), data=bogus).status_code == 200
    assert _state(bridge, "via-at") is DeliveryState.SENT
    # each carrier's own reports still apply
    real = {"id": "ATXid_real", "status": "Success"}
    assert bridge.http.post(_status_path(bridge, "africastalking"), data=real).status_code == 200
    assert _state(bridge, "via-at") is DeliveryState.DELIVERED
    real = {"ref": "via-generic", "status": "delivered"}
    assert bridge.http.post(_status_path(bridge, "generic"), data=real).status_code == 200
    assert _state(bridge, "via-generic") is DeliveryState.DELIVERED


def test_a_ref_names_no_sms_that_was_never_handed_to_the_reporting_carrier(
    bridge: RunningBridge,
) -> None:
    now = bridge.clock()
    bridge.store.write_sync(lambda c: outgoing.insert_in(c, "unsent", "+254712345678", "x", now))
    forged = {"ref": "unsent", "status": "delivered"}
    assert bridge.http.post(_status_path(bridge, "generic"), data=forged).status_code == 200
    assert _state(bridge, "unsent") is DeliveryState.QUEUED


def test_unknown_statuses_and_ids_are_logged_and_counted(
    bridge: RunningBridge, caplog: pytest.LogCaptureFixture
) -> None:
    def counted(why: str) -> float:
        got = scrape(bridge.http.get("/metrics").text)
        key = ("smsbridge_delivery_reports_unknown_total", (("carrier", "generic"), ("why", why)))
        return got.get(key, 0.0)

    before_status, before_id = counted("status"), counted("id")
    with caplog.at_level(logging.INFO, logger="smsbridge.outbound.send"):
        odd = {"id": "g-1", "status": "teleported"}
        assert bridge.http.post(_status_path(bridge, "generic"), data=odd).status_code == 200
        nobody = {"id": "g-nobody", "status": "delivered"}
        assert bridge.http.post(_status_path(bridge, "generic"), data=nobody).status_code == 200
    assert counted("status") == before_status + 1
    assert counted("id") == before_id + 1
    assert "event=delivery_report_unknown_status carrier=generic" in caplog.text
    assert "event=delivery_report_unknown_id carrier=generic" in caplog.text
    assert "g-nobody" in caplog.text


def test_a_success_clears_the_reason_an_earlier_report_left(bridge: RunningBridge) -> None:
    _sent(bridge, "m-reason", "generic", "g-reason")
    update = StatusUpdate("generic", "g-reason", DeliveryState.SENT, reason="queued at SMSC")
    bridge.store.write_sync(lambda c: delivery.delivery_report_in(c, update, bridge.clock()))
    message = outgoing.get(bridge.store, "m-reason")
    assert message is not None and message.reason is None
    # a reason given on the way (a held SMS's, a failed attempt's) goes once it is delivered
    bridge.store.write_sync(
        lambda c: c.execute("UPDATE outgoing SET reason = 'stale' WHERE ref = 'm-reason'")
    )
    done = {"id": "g-reason", "status": "delivered"}
    assert bridge.http.post(_status_path(bridge, "generic"), data=done).status_code == 200
    message = outgoing.get(bridge.store, "m-reason")
    assert message is not None and message.state is DeliveryState.DELIVERED
    assert message.reason is None


def test_outbox_ls_ref_shows_the_carriers_id(
    bridge: RunningBridge, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _sent(bridge, "m-listed", "twilio", "SMlisted0001")
    monkeypatch.setenv("SMSBRIDGE_DATABASE", str(bridge.settings.database))
    assert main(["outbox", "ls", "--ref", "m-listed"]) == 0
    table = capsys.readouterr().out
    assert "CARRIER ID" in table and "SMlisted0001" in table
    assert main(["outbox", "ls", "--ref", "m-listed", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["carrier_id"] == "SMlisted0001" and row["ambiguous_since"] is None


def _attempted(conn: Any, ref: str, now: float) -> outgoing.Outgoing:
    """A queued outgoing SMS whose send attempt on `generic` is open (as a claim leaves it)."""
    outgoing.insert_in(conn, ref, "+254712345678", "Visit tomorrow", now)
    message = outgoing.get_in(conn, ref)
    assert message is not None
    return outgoing.attempt_in(conn, message, "generic", now)[0]


def test_an_accepted_send_is_one_update_of_the_sms_and_one_insert_of_its_reports(
    database: Path | str,
) -> None:
    """The send path's outcome: where the SMS went, its attempt closed and its new state are
    one UPDATE; the states it entered (pending, sent) are owed to CHT in one INSERT."""
    statements: list[str] = []

    def job(conn: Any) -> None:
        _attempted(conn, "m-1", NOW)
        if isinstance(conn, sqlite3.Connection):
            conn.set_trace_callback(statements.append)
        delivery.accepted_in(conn, "m-1", "generic", "generic", "g-1", DeliveryState.SENT, NOW)
        if isinstance(conn, sqlite3.Connection):
            conn.set_trace_callback(None)

    with open_store(database) as store:
        store.write_sync(job)
        message = outgoing.get(store, "m-1")
        owed = [update["status"] for _, update in reports.owed_reports(store)]
    assert message is not None
    assert (message.state, message.channel, message.carrier, message.external_id) == (
        DeliveryState.SENT,
        "generic",
        "generic",
        "g-1",
    )
    assert message.attempt_started_at is None and message.ambiguous_since is None
    assert message.sent_at == NOW
    assert owed == ["UNSENT", "PENDING", "SENT"]
    if isinstance(database, Path):  # the statements, as SQLite traced them
        assert sum(s.startswith("UPDATE outgoing ") for s in statements) == 1
        assert sum(s.startswith("INSERT INTO outgoing_reports") for s in statements) == 1


def test_a_send_answered_after_its_delivery_report_records_the_carriers_id(
    database: Path | str,
) -> None:
    """A delivery report naming our ref overtook the send response: the SMS is delivered
    already, and the late answer still records the carrier's id and closes the attempt,
    without moving the state back or owing anything twice."""

    def job(conn: Any) -> None:
        _attempted(conn, "m-2", NOW)
        report = StatusUpdate("generic", "", DeliveryState.DELIVERED, ref="m-2")
        message = outgoing.get_in(conn, "m-2")
        assert message is not None
        outgoing.route_in(conn, message, channel="generic", carrier="generic")
        assert delivery.delivery_report_in(conn, report, NOW)
        delivery.accepted_in(conn, "m-2", "generic", "generic", "g-2", DeliveryState.SENT, NOW + 1)

    with open_store(database) as store:
        store.write_sync(job)
        message = outgoing.get(store, "m-2")
        owed = [update["status"] for _, update in reports.owed_reports(store)]
    assert message is not None
    assert (message.state, message.external_id) == (DeliveryState.DELIVERED, "g-2")
    assert message.attempt_started_at is None and message.ambiguous_since is None
    assert owed == ["UNSENT", "PENDING", "SENT", "DELIVERED"]
