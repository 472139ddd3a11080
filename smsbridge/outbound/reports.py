"""The status reports an outgoing CHT message owes CHT (table `outgoing_reports`): each state a
message enters is owed exactly once (a row unique per message and status), handed to CHT on the
next `/api/sms` exchange (outbound/chtsync.py) and marked reported once CHT has heard it.

Functions named `*_in` run inside a store write job. This module is the only one that writes or
counts rows of `outgoing_reports` (tests/test_table_owners.py); outbound/messages.py decides
which states are owed when a message moves.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from smsbridge.sms import DeliveryState
from smsbridge.store import Store

# Our state -> the status word of the medic-gateway protocol (what CHT hears).
GATEWAY_STATUS: dict[DeliveryState, str] = {
    DeliveryState.QUEUED: "UNSENT",
    DeliveryState.SENDING: "PENDING",
    DeliveryState.SENT: "SENT",
    DeliveryState.DELIVERED: "DELIVERED",
    DeliveryState.FAILED: "FAILED",
}


def owe_in(
    conn: sqlite3.Connection,
    ref: str,
    states: Sequence[DeliveryState],
    reason: str | None,
    now: float,
) -> None:
    """The message `ref` entered `states` (in that order): CHT is owed each (once; a failure
    with its reason). One statement however many states (queued -> sent owes two)."""
    rows = ", ".join("(?, ?, ?, ?)" for _ in states)
    params: list[object] = []
    for state in states:
        failed = state is DeliveryState.FAILED
        params += (ref, GATEWAY_STATUS[state], reason if failed else None, now)
    conn.execute(
        f"INSERT INTO outgoing_reports(ref, status, reason, created_at) VALUES {rows} "
        "ON CONFLICT DO NOTHING",
        params,
    )


def owe_latest_again_in(conn: sqlite3.Connection, ref: str) -> None:
    """CHT offered `ref` again, so it never heard its latest status: owe that one again (CHT
    ignores a repeated status)."""
    conn.execute(
        "UPDATE outgoing_reports SET reported_at = NULL WHERE id = ("
        " SELECT id FROM outgoing_reports WHERE ref = ? ORDER BY id DESC LIMIT 1)",
        (ref,),
    )


def owed_reports(store: Store, limit: int = 100) -> list[tuple[int, dict[str, str]]]:
    """Status updates not yet heard by CHT, oldest first: (row id, {id, status[, reason]})."""
    rows = store.query(
        "SELECT id, ref, status, reason FROM outgoing_reports WHERE reported_at IS NULL "
        "ORDER BY id LIMIT ?",
        (limit,),
    )
    out = []
    for row in rows:
        update = {"id": row["ref"], "status": row["status"]}
        if row["reason"]:
            update["reason"] = row["reason"]
        out.append((row["id"], update))
    return out


def superseded(owed: Sequence[tuple[int, dict[str, str]]]) -> list[int]:
    """After an exchange that CHT may have processed, the reports that need not be sent again:
    every one but the newest of each message. CHT applies an exchange's updates in order and has
    no forward-only guard, so resending [sent, delivered] to a task already `delivered` would
    add `sent` and `delivered` to its history again; resending only `delivered` is a no-op there
    (same state). If the exchange was in fact never processed, CHT still ends in the right
    state, without the skipped intermediate entries: a shorter history, never a repeated one."""
    newest: dict[str, int] = {}
    for row_id, update in owed:
        newest[update["id"]] = row_id
    keep = set(newest.values())
    return [row_id for row_id, _update in owed if row_id not in keep]


# Reports marked heard per statement: an exchange carries at most chtsync.MAX_UPDATES (100).
_MARK_CHUNK = 100
_MARK_SQL = (
    f"UPDATE outgoing_reports SET reported_at = ? WHERE id IN ({','.join('?' * _MARK_CHUNK)})"
)


def mark_reported_in(conn: sqlite3.Connection, ids: Sequence[int], now: float) -> None:
    """The reports `ids` were heard by CHT: one statement per _MARK_CHUNK of them, not one
    each (the store's writer thread gives up the GIL for every statement it runs and must win
    it back from the event loop). A short list is padded with its own first id, so the
    statement has one shape, prepared once."""
    for start in range(0, len(ids), _MARK_CHUNK):
        chunk = list(ids[start : start + _MARK_CHUNK])
        chunk += [chunk[0]] * (_MARK_CHUNK - len(chunk))
        conn.execute(_MARK_SQL, (now, *chunk))


def reports_for(store: Store, ref: str) -> list[tuple[str, str | None, float, float | None]]:
    """Each state owed to CHT for the message `ref`, in order: (status, reason, owed since,
    reported at or None while still owed)."""
    rows = store.query(
        "SELECT status, reason, created_at, reported_at FROM outgoing_reports WHERE ref = ? "
        "ORDER BY id",
        (ref,),
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


# -- retention (smsbridge/retention.py) -----------------------------------------------------------


def forget_in(conn: sqlite3.Connection, refs: Sequence[str]) -> int:
    """Inside a write job: delete the reports of the outgoing SMS `refs` (being pruned, all
    heard by CHT). Returns how many."""
    return sum(
        conn.execute("DELETE FROM outgoing_reports WHERE ref = ?", (ref,)).rowcount for ref in refs
    )


def count_for_in(conn: sqlite3.Connection, refs_sql: str, params: Sequence[object]) -> int:
    """How many reports belong to the SMS whose refs `refs_sql` selects (`--dry-run`)."""
    row = conn.execute(
        f"SELECT COUNT(*) FROM outgoing_reports WHERE ref IN ({refs_sql})", tuple(params)
    ).fetchone()
    return int(row[0])
