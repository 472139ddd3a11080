"""What operators did in the console (table `console_audit`): each action on a message or a dead
letter (retry, drop, release) and each view of a message's text, with who and when. A message's
page lists its entries.

This module is the only one that writes or counts rows of `console_audit`
(tests/test_table_owners.py); `record_in` runs inside a store write job, so an action and its
entry are one transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from smsbridge.store import Store

VIEWED = "viewed"
RETRY = "retry"
DROP = "drop"
RELEASE = "release"
DROP_HELD = "drop held"


@dataclass(frozen=True)
class Entry:
    at: float
    actor: str
    action: str
    target: str  # inbound | outgoing | task
    ref: str
    message: str | None
    outcome: str | None


def record_in(
    conn: sqlite3.Connection,
    at: float,
    actor: str,
    action: str,
    target: str,
    ref: str,
    *,
    message: str | None = None,
    outcome: str | None = None,
) -> None:
    """Inside a write job: `actor` did `action` to `target` `ref` (about `message`)."""
    conn.execute(
        "INSERT INTO console_audit(at, actor, action, target, ref, message, outcome) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (at, actor, action, target, ref, message, outcome),
    )


def for_message(store: Store, message: str, limit: int = 200) -> list[Entry]:
    """The entries about `message` (an inbound uuid or an outgoing ref), oldest first."""
    rows = store.query(
        "SELECT at, actor, action, target, ref, message, outcome FROM console_audit "
        "WHERE message = ? ORDER BY id LIMIT ?",
        (message, limit),
    )
    return [Entry(*row) for row in rows]


def latest(store: Store, limit: int = 50) -> list[Entry]:
    """The latest entries, newest first."""
    rows = store.query(
        "SELECT at, actor, action, target, ref, message, outcome FROM console_audit "
        "ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [Entry(*row) for row in rows]
