"""Outgoing SMS as facts: stored under CHT's id, moved forward through their states, owing CHT
each state entered (the reports themselves: reports.py; carriers' results and delivery reports:
delivery.py).

Every function named `*_in` runs inside a store write job (one transaction); the async wrappers
go through the writer and return after the commit. This module is the only one that writes or
counts rows of `outgoing` (tests/test_table_owners.py).

States only move forward (`sms.RANK`): a late "sent" never overwrites "delivered", a repeated
report changes nothing. Each state a message enters is owed to CHT exactly once (a row in
`outgoing_reports`, unique per message and status); a jump (queued -> delivered, when the
delivery report overtakes the send response) owes the states in between too, so CHT's history
reads pending, sent, delivered.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from smsbridge import tasks
from smsbridge.inbound import messages as incoming
from smsbridge.outbound import reports
from smsbridge.outbound.loopguard import text_key
from smsbridge.outbound.transitions import Change, note
from smsbridge.segments import segment
from smsbridge.settings import Settings
from smsbridge.sms import RANK, DeliveryState, well_formed
from smsbridge.store import POSTGRESQL, Store, matching

SEND = "send"  # task kind: send one outgoing SMS (ref = its ref)

_PATH = (DeliveryState.SENDING, DeliveryState.SENT, DeliveryState.DELIVERED)
FINAL = frozenset({DeliveryState.DELIVERED, DeliveryState.FAILED})


@dataclass(frozen=True)
class Outgoing:
    id: int
    ref: str
    origin: str
    to: str
    content: str
    text_key: str
    segments: int
    automatic: bool
    state: DeliveryState
    reason: str | None
    channel: str | None
    carrier: str | None
    external_id: str | None
    phone_ack: bool
    released: bool
    created_at: float
    sent_at: float | None = None
    # a send claimed and not concluded (outbound/send.py): when, on which channel
    attempt_started_at: float | None = None
    attempt_channel: str | None = None
    # since when a send may have reached the carrier without its answer being stored
    ambiguous_since: float | None = None
    # seconds it ranks ahead of its due time: a reply (`Lanes`)
    lead: float = 0.0

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Outgoing:
        return cls(
            id=row["id"],
            ref=row["ref"],
            origin=row["origin"],
            to=row["to_number"],
            content=row["content"],
            text_key=row["text_key"],
            segments=row["segments"],
            automatic=bool(row["automatic"]),
            state=DeliveryState(row["state"]),
            reason=row["reason"],
            channel=row["channel"],
            carrier=row["carrier"],
            external_id=row["external_id"],
            phone_ack=bool(row["phone_ack"]),
            released=bool(row["released"]),
            created_at=row["created_at"],
            sent_at=row["sent_at"],
            attempt_started_at=row["attempt_started_at"],
            attempt_channel=row["attempt_channel"],
            ambiguous_since=row["ambiguous_since"],
            lead=row["lead"],
        )

    def handed_to(self, carrier: str) -> bool:
        """Was this SMS handed to `carrier` (it accepted it, or a send to it was tried)? Only
        that carrier's reports may move it (outbound/delivery.py)."""
        channels = (self.channel, self.attempt_channel)
        return self.carrier == carrier or any(
            channel is not None and channel.split(":", 1)[0] == carrier for channel in channels
        )

    def change(self, state: DeliveryState, now: float, reason: str | None = None) -> Change:
        """This SMS entering `state` (for the log and the metrics: transitions.py)."""
        return Change(
            self.ref, state, now, self.state, self.origin, self.to, self.channel, self.carrier,
            self.external_id, reason, self.sent_at,
        )  # fmt: skip


def get_in(conn: sqlite3.Connection, ref: str) -> Outgoing | None:
    row = conn.execute("SELECT * FROM outgoing WHERE ref = ?", (ref,)).fetchone()
    return None if row is None else Outgoing.from_row(row)


def get(store: Store, ref: str) -> Outgoing | None:
    return store.read(lambda c: get_in(c, ref))


def by_external_id_in(conn: sqlite3.Connection, carrier: str, external_id: str) -> Outgoing | None:
    """The SMS `carrier` knows as `external_id` (its id, from the send response)."""
    row = conn.execute(
        "SELECT * FROM outgoing WHERE carrier = ? AND external_id = ?", (carrier, external_id)
    ).fetchone()
    return None if row is None else Outgoing.from_row(row)


def for_phones_in(
    conn: sqlite3.Connection, channels: Sequence[str], created_after: float, limit: int
) -> list[Outgoing]:
    """Queued SMS routed to one of `channels` (cht-gateway phones) that no phone has confirmed
    yet, created after `created_after`; oldest first, replies ahead by their lead (`Lanes`),
    at most `limit`."""
    marks = ",".join("?" for _ in channels)
    rows = conn.execute(
        f"SELECT * FROM outgoing WHERE state = ? AND channel IN ({marks}) AND phone_ack = 0 "
        f"AND created_at > ? ORDER BY created_at - lead, id LIMIT ?",
        (DeliveryState.QUEUED.value, *channels, created_after, limit),
    ).fetchall()
    return [Outgoing.from_row(row) for row in rows]


def count_same_text(store: Store, message: Outgoing, since: float) -> int:
    """How many SMS older than `message` with its text and number (`text_key`) were created at
    or after `since` and not held: the loop guard's measure (outbound/loopguard.py)."""
    rows = store.query(
        "SELECT COUNT(*) FROM outgoing WHERE text_key = ? AND created_at >= ? AND id < ? "
        "AND state != ?",
        (message.text_key, since, message.id, DeliveryState.HELD.value),
    )
    return int(rows[0][0])


# -- new messages --------------------------------------------------------------------------------


def insert_in(
    conn: sqlite3.Connection,
    ref: str,
    to: str,
    content: str,
    now: float,
    *,
    origin: str = "cht",
    automatic: bool = True,
    source: str | None = None,
    lead: float = 0.0,
) -> bool:
    """Store one outgoing SMS and its send task; False (and nothing new) if `ref` is known.
    A CHT message owes CHT its acknowledgement (UNSENT) on the next exchange. `lead`: a
    reply's (`Lanes`)."""
    seg = segment(content)
    cur = conn.execute(
        "INSERT INTO outgoing(ref, origin, to_number, content, text_key, segments, "
        "encoding, automatic, state, source, lead, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            ref,
            origin,
            to,
            content,
            text_key(to, content),
            seg.count,
            seg.encoding.value,
            int(automatic),
            DeliveryState.QUEUED.value,
            source,
            lead,
            now,
            now,
        ),
    )
    if cur.rowcount != 1:
        return False
    tasks.enqueue_in(conn, SEND, ref, now, lead=lead)
    if origin == "cht":
        reports.owe_in(conn, ref, [DeliveryState.QUEUED], None, now)
    note(Change(ref, DeliveryState.QUEUED, now, origin=origin, to=to))
    return True


@dataclass(frozen=True)
class Lanes:
    """Replies first. CHT's /api/sms does not say which message answers which report, so an
    SMS to a number that sent us one within `window` seconds (SMSBRIDGE_REPLY_WINDOW) is taken
    for a reply, marked when it is stored. A reply ranks as if due `lead` seconds
    (SMSBRIDGE_REPLY_LEAD) earlier: in the send queue (smsbridge/tasks.py `claim_in`) and in
    a phone's hand-out (`for_phones_in`), within the same rate budget. It goes before the
    other SMS (scheduled, bulk) that became due less than `lead` before it, after older ones:
    the rest is never held back more than `lead` by replies. `lead` 0: no lanes."""

    window: float = 0.0
    lead: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Lanes:
        return cls(settings.reply_window, settings.reply_lead)

    def lead_in(self, conn: sqlite3.Connection, to: str, now: float) -> float:
        """The lead of an SMS to `to` stored now: `lead` for a reply, else 0."""
        if self.lead <= 0 or self.window <= 0:
            return 0.0
        came_in = incoming.last_inbound_channel(conn, to, now - self.window)
        return self.lead if came_in is not None else 0.0


def store_cht_messages_in(
    conn: sqlite3.Connection,
    messages: Sequence[dict[str, Any]],
    now: float,
    lanes: Lanes | None = None,
) -> int:
    """CHT's outgoing messages `{id, to, content}` -> rows; returns how many were new (each
    marked a reply or not by `lanes`). One CHT offers again is not stored twice: CHT only
    re-offers a message whose status it never heard, so its latest status is owed again (CHT
    ignores a repeated status)."""
    new = 0
    for message in messages:
        ref, to, content = message.get("id"), message.get("to"), message.get("content")
        if not ref or not to or content is None:
            continue
        ref, to, content = (well_formed(str(value)) for value in (ref, to, content))
        lead = 0.0 if lanes is None else lanes.lead_in(conn, to, now)
        if insert_in(conn, ref, to, content, now, lead=lead):
            new += 1
            continue
        known = get_in(conn, ref)
        if known is not None and known.origin == "cht":
            reports.owe_latest_again_in(conn, known.ref)
    return new


def reply_in(
    conn: sqlite3.Connection,
    to: str,
    content: str,
    source: str | None,
    now: float,
    *,
    lead: float = 0.0,
) -> str:
    """The bridge's own automatic reply (e.g. to a malformed form): queued like CHT's, but
    reported to nobody; in the replies' lane with `lead` (`Lanes`). Returns its ref. With
    `lead` bound, usable as the inbound pipeline's reply hook."""
    ref = f"bridge-{uuid.uuid4()}"
    insert_in(
        conn, ref, to, content, now, origin="bridge", automatic=True, source=source, lead=lead
    )
    return ref


# -- where it goes --------------------------------------------------------------------------------

_ROUTE_FIELDS = frozenset({"channel", "carrier", "external_id", "phone_ack"})


def route_in(
    conn: sqlite3.Connection, message: Outgoing, now: float | None = None, **fields: Any
) -> Outgoing:
    """Record where `message` goes or went, without changing its state (`advance_in` does
    that): any of `channel`, `carrier`, `external_id` (the carrier's id for it) and `phone_ack`
    (a phone confirmed it). With `now`, also when. Returns the message so updated."""
    unknown = set(fields) - _ROUTE_FIELDS
    if unknown or not fields:
        raise TypeError(f"route_in: not a routing field: {sorted(unknown)}")
    columns = list(fields)
    values = [int(v) if isinstance(v, bool) else v for v in fields.values()]
    if now is not None:
        columns.append("updated_at")
        values.append(now)
    assignments = ", ".join(f"{column} = ?" for column in columns)
    conn.execute(f"UPDATE outgoing SET {assignments} WHERE id = ?", (*values, message.id))
    return replace(message, **fields)


def move_to_channel_in(
    conn: sqlite3.Connection, message: Outgoing, channel: str, now: float
) -> Outgoing:
    """Hand `message` to `channel` (failover, or the route's choice): a phone's confirmation
    of the channel it leaves no longer counts. Nothing changes when it is there already."""
    if message.channel == channel:
        return message
    return route_in(conn, message, now, channel=channel, phone_ack=False)


# -- send attempts (outbound/send.py: no blind resend) ---------------------------------------------


def attempt_in(
    conn: sqlite3.Connection, message: Outgoing, channel: str, now: float
) -> tuple[Outgoing, bool]:
    """A worker claimed `message` to send it on `channel`: record the attempt before any call
    (in the claim's own transaction). An attempt still open from an earlier claim never heard
    its outcome (the worker died or lost its lease mid-send): the SMS is ambiguous since that
    attempt started. Returns the message so updated, and whether it has just become ambiguous."""
    since = message.ambiguous_since
    newly = since is None and message.attempt_started_at is not None
    if newly:
        since = message.attempt_started_at
    conn.execute(
        "UPDATE outgoing SET attempt_started_at = ?, attempt_channel = ?, ambiguous_since = ? "
        "WHERE id = ?",
        (now, channel, since, message.id),
    )
    updated = replace(
        message, attempt_started_at=now, attempt_channel=channel, ambiguous_since=since
    )
    return updated, newly


def attempt_over_in(
    conn: sqlite3.Connection, message: Outgoing, *, ambiguous_since: float | None = None
) -> Outgoing:
    """The attempt has its outcome: no longer open. `ambiguous_since`: the SMS is (still, or
    now: a send that timed out) ambiguous since then; None: it is not (the carrier answered)."""
    conn.execute(
        "UPDATE outgoing SET attempt_started_at = NULL, ambiguous_since = ? WHERE id = ?",
        (ambiguous_since, message.id),
    )
    return replace(message, attempt_started_at=None, ambiguous_since=ambiguous_since)


# -- moving forward ------------------------------------------------------------------------------


def advance_in(
    conn: sqlite3.Connection,
    message: Outgoing,
    state: DeliveryState,
    now: float,
    *,
    reason: str | None = None,
) -> bool:
    """Move `message` to `state` if that is forward; owe CHT each state entered. False when the
    report changes nothing (a repeat, a late lower state, anything after a final state)."""
    return _move_in(conn, message, state, now, reason, {})


def answered_in(
    conn: sqlite3.Connection,
    message: Outgoing,
    state: DeliveryState,
    now: float,
    *,
    reason: str | None = None,
    **route: Any,
) -> bool:
    """A carrier answered the attempt on `message` (outbound/delivery.py `accepted_in`):
    record where it went (`route_in`'s fields), close the attempt (not ambiguous:
    `attempt_over_in`) and move it to `state` when that is forward (`advance_in`), in ONE
    UPDATE. Returns whether the state moved."""
    unknown = set(route) - _ROUTE_FIELDS
    if unknown:
        raise TypeError(f"answered_in: not a routing field: {sorted(unknown)}")
    closed = {"attempt_started_at": None, "ambiguous_since": None}
    return _move_in(conn, message, state, now, reason, {**route, **closed})


def _move_in(
    conn: sqlite3.Connection,
    message: Outgoing,
    state: DeliveryState,
    now: float,
    reason: str | None,
    fields: dict[str, Any],
) -> bool:
    """ONE UPDATE of `message`: `fields` (columns named as `Outgoing`'s) set in any case, and
    `state` when that is forward, each state entered owed to CHT and the change noted (naming
    the fields as set). Whether the state moved."""
    entered = _entered(message.state, state)
    if entered is None and not fields:
        return False
    assignments = [f"{column} = ?" for column in fields]
    values = [int(v) if isinstance(v, bool) else v for v in fields.values()]
    if entered is None:
        assignments.append("updated_at = ?")
        values.append(now)
    else:
        assignments.append(_ADVANCE_SET)
        values += _advance_params(state, now, reason)
    conn.execute(
        f"UPDATE outgoing SET {', '.join(assignments)} WHERE id = ?", (*values, message.id)
    )
    if entered is None:
        return False
    _advanced(conn, replace(message, **fields), state, entered, now, reason)
    return True


# a success clears the reason an earlier failed attempt or report left behind
_ADVANCE_SET = (
    "state = ?, updated_at = ?, "
    "reason = CASE WHEN ? = 1 THEN NULL ELSE COALESCE(?, reason) END, "
    "sent_at = CASE WHEN ? = 1 AND sent_at IS NULL THEN ? ELSE sent_at END"
)


def _advance_params(state: DeliveryState, now: float, reason: str | None) -> list[object]:
    sent_now = int(state in (DeliveryState.SENT, DeliveryState.DELIVERED))
    return [state.value, now, sent_now, reason, sent_now, now]


def _entered(current: DeliveryState, state: DeliveryState) -> list[DeliveryState] | None:
    """The states a message in `current` enters on moving to `state`; None: not forward."""
    if current in FINAL or RANK[state] <= RANK[current]:
        return None
    if state is DeliveryState.FAILED:
        return [state]  # failing says nothing about the states it skipped
    return [s for s in _PATH if RANK[current] < RANK[s] <= RANK[state]]


def _advanced(
    conn: sqlite3.Connection,
    message: Outgoing,
    state: DeliveryState,
    entered: list[DeliveryState],
    now: float,
    reason: str | None,
) -> None:
    """`message` moved to `state`, entering `entered`: owe CHT each, note the change."""
    if message.origin == "cht":
        reports.owe_in(conn, message.ref, entered, reason, now)
    note(message.change(state, now, reason))


def hold_in(conn: sqlite3.Connection, message: Outgoing, reason: str, now: float) -> None:
    conn.execute(
        "UPDATE outgoing SET state = ?, reason = ?, updated_at = ? WHERE id = ?",
        (DeliveryState.HELD.value, reason, now, message.id),
    )
    note(message.change(DeliveryState.HELD, now, reason))


def release_held_in(conn: sqlite3.Connection, ref: str, now: float) -> bool:
    """An operator lets a held SMS go: back to queued (the loop guard will not stop it again)
    with a fresh send task. False if it is not held."""
    row = conn.execute(
        "UPDATE outgoing SET state = ?, released = 1, reason = NULL, updated_at = ? "
        "WHERE ref = ? AND state = ? RETURNING lead",
        (DeliveryState.QUEUED.value, now, ref, DeliveryState.HELD.value),
    ).fetchone()
    if row is None:
        return False
    tasks.enqueue_in(conn, SEND, ref, now, lead=row[0])
    note(Change(ref, DeliveryState.QUEUED, now, DeliveryState.HELD, reason="released"))
    return True


def release_held(store: Store, ref: str, now: float) -> bool:
    """`release_held_in` as its own write job (the CLI)."""
    return store.write_sync(lambda conn: release_held_in(conn, ref, now))


def drop_held_in(conn: sqlite3.Connection, ref: str, now: float) -> bool:
    """An operator drops a held SMS: failed, reason `held: <why>`, never sent."""
    message = get_in(conn, ref)
    if message is None or message.state is not DeliveryState.HELD:
        return False
    return advance_in(conn, message, DeliveryState.FAILED, now, reason="held: dropped")


def drop_held(store: Store, ref: str, now: float) -> bool:
    """`drop_held_in` as its own write job (the CLI)."""
    return store.write_sync(lambda conn: drop_held_in(conn, ref, now))


def drop_dead_in(conn: sqlite3.Connection, task_id: int, now: float) -> tasks.Task | None:
    """An operator drops the dead letter `task_id`: deleted; when it is a send, its SMS fails
    "dropped" in the same transaction (so CHT hears FAILED on the next exchange) — unless the
    SMS is no longer waiting to be sent (already sent, final, or taken by a phone that reports
    on it). The task as it was, or None if no such dead task."""
    task = tasks.drop_in(conn, task_id)
    if task is None or task.kind != SEND:
        return task
    message = get_in(conn, task.ref)
    if message is not None and _unsent(message):
        advance_in(conn, message, DeliveryState.FAILED, now, reason="dropped")
    return task


def drop_dead_send(store: Store, task_id: int, now: float) -> bool:
    """`drop_dead_in` as its own write job (the CLI). False if no such dead task."""
    return store.write_sync(lambda conn: drop_dead_in(conn, task_id, now) is not None)


def _unsent(message: Outgoing) -> bool:
    waiting = (DeliveryState.QUEUED, DeliveryState.HELD, DeliveryState.SENDING)
    return message.state in waiting and not message.phone_ack


def held(store: Store, limit: int = 1000) -> list[Outgoing]:
    rows = store.query(
        "SELECT * FROM outgoing WHERE state = ? ORDER BY id LIMIT ?",
        (DeliveryState.HELD.value, limit),
    )
    return [Outgoing.from_row(r) for r in rows]


def expire_stale_in(conn: sqlite3.Connection, now: float, ttl: float) -> int:
    """The sweep: held SMS older than `ttl` fail "expired" (never sent); an SMS whose send task
    is gone altogether (an operator dropped its dead letter) fails "dropped" — except one a
    phone has taken, which the phone reports on."""
    held_rows = conn.execute(
        "SELECT * FROM outgoing WHERE state = ? AND created_at <= ? LIMIT 500",
        (DeliveryState.HELD.value, now - ttl),
    ).fetchall()
    for row in held_rows:
        advance_in(conn, Outgoing.from_row(row), DeliveryState.FAILED, now, reason="expired")
    dropped = conn.execute(
        "SELECT * FROM outgoing WHERE state IN (?, ?) AND phone_ack = 0 "
        f"AND NOT {tasks.has_task_sql('?', 'outgoing.ref')} LIMIT 500",
        (DeliveryState.QUEUED.value, DeliveryState.SENDING.value, SEND),
    ).fetchall()
    for row in dropped:
        advance_in(conn, Outgoing.from_row(row), DeliveryState.FAILED, now, reason="dropped")
    return len(held_rows) + len(dropped)


# -- for operators: metrics and listings ---------------------------------------------------------


def counts(store: Store) -> dict[tuple[str, str | None], int]:
    """(state, channel) -> number of outgoing SMS, for `/metrics`."""
    rows = store.query("SELECT state, channel, COUNT(*) FROM outgoing GROUP BY state, channel")
    return {(r[0], r[1]): r[2] for r in rows}


def by_refs(store: Store, refs: Sequence[str]) -> dict[str, Outgoing]:
    """ref -> the outgoing SMS, for the refs that are outgoing SMS (`outbox ls`)."""
    found: dict[str, Outgoing] = {}
    unique = list(dict.fromkeys(refs))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        marks = ",".join("?" for _ in chunk)
        for row in store.query(f"SELECT * FROM outgoing WHERE ref IN ({marks})", tuple(chunk)):
            found[row["ref"]] = Outgoing.from_row(row)
    return found


def listing(
    store: Store,
    *,
    state: str | None = None,
    ref: str | None = None,
    channel: str | None = None,
    created_before: float | None = None,
    created_after: float | None = None,
    limit: int = 50,
) -> list[Outgoing]:
    """Outgoing SMS, oldest first, filtered (`smsbridge outbox ls --state held`, ...)."""
    where, params = matching(
        (
            ("state = ?", state),
            ("ref = ?", ref),
            ("channel = ?", channel),
            ("created_at <= ?", created_before),
            ("created_at >= ?", created_after),
        )
    )
    rows = store.query(
        f"SELECT * FROM outgoing WHERE {where} ORDER BY id LIMIT ?", (*params, limit)
    )
    return [Outgoing.from_row(row) for row in rows]


def recent(
    store: Store,
    *,
    state: str | None = None,
    channel: str | None = None,
    to: str | None = None,
    created_after: float | None = None,
    created_before: float | None = None,
    limit: int = 50,
) -> list[Outgoing]:
    """Outgoing SMS, newest first, filtered (the console's list)."""
    where, params = matching(
        (
            ("state = ?", state),
            ("channel = ?", channel),
            ("to_number = ?", to),
            ("created_at >= ?", created_after),
            ("created_at <= ?", created_before),
        )
    )
    rows = store.query(
        f"SELECT * FROM outgoing WHERE {where} ORDER BY id DESC LIMIT ?", (*params, limit)
    )
    return [Outgoing.from_row(row) for row in rows]


def replies_to(store: Store, source: str) -> list[Outgoing]:
    """The bridge's own replies to the inbound SMS `source` (its uuid), oldest first."""
    rows = store.query("SELECT * FROM outgoing WHERE source = ? ORDER BY id", (source,))
    return [Outgoing.from_row(row) for row in rows]


def hourly(store: Store, since: float) -> list[tuple[int, str, int]]:
    """(hour, what, count) since `since` (epoch seconds; `hour` counts whole hours from it):
    `queued` by when each SMS was created, `sent` by when it left, `delivered` and `failed`
    by its last change."""
    # whole hours: SQLite's CAST truncates, PostgreSQL's rounds (so it floors)
    hour = "CAST((%s - ?) / 3600 AS INTEGER)"
    if store.dialect == POSTGRESQL:
        hour = "FLOOR((%s - ?) / 3600)"
    rows = store.query(
        f"SELECT {hour % 'created_at'} AS hour, 'queued', COUNT(*) "
        "FROM outgoing WHERE created_at >= ? GROUP BY hour "
        f"UNION ALL SELECT {hour % 'sent_at'} AS hour, 'sent', COUNT(*) "
        "FROM outgoing WHERE sent_at >= ? GROUP BY hour "
        f"UNION ALL SELECT {hour % 'updated_at'} AS hour, state, COUNT(*) "
        "FROM outgoing WHERE state IN (?, ?) AND updated_at >= ? GROUP BY hour, state",
        (since, since, since, since, since,
         DeliveryState.DELIVERED.value, DeliveryState.FAILED.value, since),
    )  # fmt: skip
    return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]


# -- retention (smsbridge/retention.py) -----------------------------------------------------------

PRUNABLE = (DeliveryState.DELIVERED, DeliveryState.FAILED)
"""Final states: an SMS in one, last changed before the retention window, without a send task
and with every status report heard by CHT, may be pruned."""


def _prunable(columns: str) -> str:
    """SELECT `columns` of the outgoing SMS that may be pruned (params: `_prunable_params`)."""
    return (
        f"SELECT {columns} FROM outgoing WHERE updated_at < ? AND state IN (?, ?) "
        f"AND NOT {tasks.has_task_sql('?', 'outgoing.ref')} "
        "AND ref NOT IN (SELECT ref FROM outgoing_reports WHERE reported_at IS NULL)"
    )


def _prunable_params(before: float) -> tuple[object, ...]:
    return (before, *(state.value for state in PRUNABLE), SEND)


def prune_in(conn: sqlite3.Connection, before: float, limit: int) -> list[tuple[int, str]]:
    """Inside a write job: delete up to `limit` finished SMS last changed before `before`;
    returns their (id, ref), for their reports to go in the same transaction."""
    rows = conn.execute(
        _prunable("id, ref") + " LIMIT ?", (*_prunable_params(before), limit)
    ).fetchall()
    gone = [(int(row[0]), str(row[1])) for row in rows]
    conn.executemany("DELETE FROM outgoing WHERE id = ?", [(row_id,) for row_id, _ in gone])
    return gone


def prunable_in(conn: sqlite3.Connection, before: float) -> int:
    """How many SMS `prune_in` would delete, all batches together."""
    return int(conn.execute(_prunable("COUNT(*)"), _prunable_params(before)).fetchone()[0])


def prunable_select(before: float, column: str) -> tuple[str, tuple[object, ...]]:
    """SQL selecting `column` (id or ref) of the SMS `prune_in` would delete, and its params:
    the reports' owners count what would go with them (`--dry-run`)."""
    return _prunable(column), _prunable_params(before)


# -- delivery states read from carriers (outbound/statuspoll.py) --------------------------------


def awaiting_state_in(
    conn: sqlite3.Connection, carrier: str, sent_after: float, after_id: int, limit: int
) -> list[Outgoing]:
    """SMS `carrier` accepted (state `sent`, its id known) after `sent_after`, with ids above
    `after_id`; in id order, at most `limit`: those whose state is to be read from a carrier
    that reports none (`Carrier.polls_status`)."""
    rows = conn.execute(
        "SELECT * FROM outgoing WHERE state = ? AND carrier = ? AND external_id IS NOT NULL "
        "AND sent_at > ? AND id > ? ORDER BY id LIMIT ?",
        (DeliveryState.SENT.value, carrier, sent_after, after_id, limit),
    ).fetchall()
    return [Outgoing.from_row(row) for row in rows]
