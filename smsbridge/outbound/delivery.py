"""What carriers say about outgoing SMS: a send accepted (with the carrier's id), a send that
failed for now, and delivery reports — stored first, then applied to the message they name (by
our ref when the carrier echoes it, else by the carrier's id). A report for an id we cannot match
yet (it overtook the send response) is kept and applied when the send returns; never dropped.

Functions named `*_in` run inside a store write job. This module owns the `delivery_reports`
table; the messages themselves change through outbound/messages.py, their owner.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from smsbridge.outbound.messages import advance_in, by_external_id_in, get_in, route_in
from smsbridge.sms import DeliveryState, StatusUpdate


def accepted_in(
    conn: sqlite3.Connection,
    ref: str,
    channel: str,
    carrier: str,
    external_id: str | None,
    state: DeliveryState,
    now: float,
) -> None:
    """`channel` (carrier module `carrier`) accepted the SMS `ref`: record its id, move forward
    (a queued SMS owes PENDING and SENT), then apply any delivery reports for that id that
    arrived before the send response did."""
    message = get_in(conn, ref)
    if message is None:
        return
    message = route_in(
        conn, message, now, channel=channel, carrier=carrier, external_id=external_id
    )
    advance_in(conn, message, state, now)
    if external_id is None:
        return
    early = conn.execute(
        "SELECT * FROM delivery_reports WHERE carrier = ? AND external_id = ? "
        "AND outgoing_id IS NULL ORDER BY id",
        (carrier, external_id),
    ).fetchall()
    for row in early:
        current = get_in(conn, ref)
        if current is not None:
            advance_in(conn, current, DeliveryState(row["state"]), now, reason=row["reason"])
        conn.execute(
            "UPDATE delivery_reports SET outgoing_id = ? WHERE id = ?", (message.id, row["id"])
        )


def tried_in(conn: sqlite3.Connection, ref: str, channel: str, now: float) -> None:
    """A send attempt on `channel` failed for now: the SMS is `sending` (it may have left)."""
    message = get_in(conn, ref)
    if message is None:
        return
    advance_in(conn, route_in(conn, message, channel=channel), DeliveryState.SENDING, now)


def delivery_report_in(conn: sqlite3.Connection, update: StatusUpdate, now: float) -> bool:
    """Store a carrier's delivery report and apply it when it names a message we know (by our
    ref, or by the carrier's id); otherwise it waits for the send response. Returns whether it
    matched."""
    message = None
    if update.ref:
        message = get_in(conn, update.ref)
    if message is None and update.external_id:
        message = by_external_id_in(conn, update.carrier, update.external_id)
    conn.execute(
        "INSERT INTO delivery_reports(carrier, external_id, ref, state, carrier_status, reason, "
        "received_at, outgoing_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            update.carrier,
            update.external_id,
            update.ref,
            update.state.value,
            update.carrier_status,
            update.reason,
            now,
            None if message is None else message.id,
        ),
    )
    if message is None:
        return False
    if update.external_id and message.external_id is None:
        message = route_in(conn, message, carrier=update.carrier, external_id=update.external_id)
    advance_in(conn, message, update.state, now, reason=update.reason)
    return True


def delivery_reports_in(
    conn: sqlite3.Connection, updates: Sequence[StatusUpdate], now: float
) -> int:
    """The status webhook's step, before its 2xx: all its reports in one transaction. Returns
    how many matched."""
    return sum(1 for u in updates if delivery_report_in(conn, u, now))
