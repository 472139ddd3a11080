"""What carriers say about outgoing SMS: a send accepted (with the carrier's id), a send that
failed for now, and delivery reports — stored first, then applied to the message they name (by
our ref when the carrier echoes it, else by the carrier's id). A report for an id we cannot match
yet (it overtook the send response) is kept and applied when the send returns; never dropped.

A report is bound to its carrier: it arrived on that carrier's status endpoint (its token or
signature checked), so it may only move an SMS handed to that carrier (`Outgoing.handed_to`);
our ref and the carrier's id are matched within that carrier only. Another carrier's token, or
a made-up id beside a real ref, moves nothing.

Functions named `*_in` run inside a store write job. This module owns the `delivery_reports`
table; the messages themselves change through outbound/messages.py, their owner.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from smsbridge.outbound import parts
from smsbridge.outbound.messages import (
    advance_in,
    answered_in,
    attempt_over_in,
    by_external_id_in,
    get_in,
    route_in,
)
from smsbridge.sms import DeliveryState, StatusUpdate
from smsbridge.store import Store


def accepted_in(
    conn: sqlite3.Connection,
    ref: str,
    channel: str,
    carrier: str,
    external_id: str | None,
    state: DeliveryState,
    now: float,
    reason: str | None = None,
) -> None:
    """`channel` (carrier module `carrier`) accepted the SMS `ref`: record its id, move forward
    (a queued SMS owes PENDING and SENT; one the carrier took only in part, FAILED with
    `reason`), then apply any delivery reports for that id that arrived before the send
    response did."""
    message = get_in(conn, ref)
    if message is None:
        return
    answered_in(  # one UPDATE: where it went, the attempt over (not ambiguous), the state
        conn,
        message,
        state,
        now,
        reason=reason,
        channel=channel,
        carrier=carrier,
        external_id=external_id,
    )
    for early_state, reason in early_in(conn, carrier, external_id, message.id):
        current = get_in(conn, ref)
        if current is not None:
            advance_in(conn, current, early_state, now, reason=reason)


def early_in(
    conn: sqlite3.Connection, carrier: str, external_id: str | None, outgoing_id: int
) -> list[tuple[DeliveryState, str | None]]:
    """The reports `carrier` sent about `external_id` before its send response told us the id
    (state, reason; in arrival order), now bound to the SMS `outgoing_id`, for the caller to
    apply (to the SMS, or to its part: outbound/split.py)."""
    if external_id is None:
        return []
    early = conn.execute(
        "SELECT * FROM delivery_reports WHERE carrier = ? AND external_id = ? "
        "AND outgoing_id IS NULL ORDER BY id",
        (carrier, external_id),
    ).fetchall()
    for row in early:
        conn.execute(
            "UPDATE delivery_reports SET outgoing_id = ? WHERE id = ?", (outgoing_id, row["id"])
        )
    return [(DeliveryState(row["state"]), row["reason"]) for row in early]


def tried_in(
    conn: sqlite3.Connection, ref: str, channel: str, now: float, *, ambiguous: bool = False
) -> None:
    """A send attempt on `channel` failed for now: the SMS is `sending`. `ambiguous`: no answer
    came (a timeout), so the SMS may have left; it is not sent again before its report had time
    to arrive (outbound/send.py)."""
    message = get_in(conn, ref)
    if message is None:
        return
    message = route_in(conn, message, channel=channel)
    message = attempt_over_in(conn, message, ambiguous_since=now if ambiguous else None)
    advance_in(conn, message, DeliveryState.SENDING, now)


def delivery_report_in(conn: sqlite3.Connection, update: StatusUpdate, now: float) -> bool:
    """Store a carrier's delivery report and apply it when it names a message we know (by our
    ref, or by the carrier's id); otherwise it waits for the send response. Returns whether it
    matched."""
    message = None
    if update.ref:
        message = get_in(conn, update.ref)
        if message is not None and not message.handed_to(update.carrier):
            message = None  # another carrier's SMS: this carrier cannot speak for it
    if message is None and update.external_id:
        message = by_external_id_in(conn, update.carrier, update.external_id)
    part = None
    if message is None:  # a part of an SMS sent in split mode (outbound/parts.py)?
        part = parts.find_in(conn, update.carrier, update.ref, update.external_id)
    if part is not None:
        message = part[1]
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
    if part is not None:
        parts.reported_in(conn, part[0], message, update.state, now, reason=update.reason)
        return True
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


def reports_for(
    store: Store, outgoing_id: int
) -> list[tuple[float, str, str | None, str | None, str | None]]:
    """The delivery reports carriers sent about the outgoing SMS `outgoing_id`, in arrival
    order: (received at, state, the carrier's status word, reason, the carrier's id)."""
    rows = store.query(
        "SELECT received_at, state, carrier_status, reason, external_id FROM delivery_reports "
        "WHERE outgoing_id = ? ORDER BY id",
        (outgoing_id,),
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


# -- retention (smsbridge/retention.py) -----------------------------------------------------------


def forget_in(conn: sqlite3.Connection, outgoing_ids: Sequence[int]) -> int:
    """Inside a write job: delete the delivery reports applied to the outgoing SMS
    `outgoing_ids` (being pruned). Returns how many."""
    return sum(
        conn.execute("DELETE FROM delivery_reports WHERE outgoing_id = ?", (i,)).rowcount
        for i in outgoing_ids
    )


def prune_in(conn: sqlite3.Connection, before: float, limit: int) -> int:
    """Inside a write job: delete up to `limit` delivery reports received before `before` that
    never matched an SMS (one that overtook its send response was matched long since)."""
    cur = conn.execute(
        "DELETE FROM delivery_reports WHERE id IN (SELECT id FROM delivery_reports "
        "WHERE received_at < ? AND outgoing_id IS NULL LIMIT ?)",
        (before, limit),
    )
    return cur.rowcount


def prunable_in(
    conn: sqlite3.Connection, before: float, ids_sql: str, params: Sequence[object]
) -> int:
    """How many delivery reports pruning would delete (`--dry-run`): the unmatched ones
    received before `before`, and those of the SMS whose ids `ids_sql` selects."""
    row = conn.execute(
        "SELECT (SELECT COUNT(*) FROM delivery_reports WHERE received_at < ? "
        "AND outgoing_id IS NULL) + "
        f"(SELECT COUNT(*) FROM delivery_reports WHERE outgoing_id IN ({ids_sql}))",
        (before, *params),
    ).fetchone()
    return int(row[0])
