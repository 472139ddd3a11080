"""Inbound SMS as stored facts: accepting them (each with its submit task, duplicates
recognised, long SMS joined from their parts) inside a store write job, reading them back,
recording their outcome, and their shape in CHT's APIs.

A message's `uuid` is our id for it: the gateway id CHT sees on a relay (`gateway_message`) and
the `_meta.gateway_ref` of a record (`record_body`). States: received -> submitted | relayed |
rejected | dead.

This module is the only one that writes or counts rows of `messages` and `inbound_parts`
(tests/test_table_owners.py); functions named `*_in` run inside a store write job.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from smsbridge import tasks
from smsbridge.sms import InboundSms
from smsbridge.store import Store, insert_rows, matching, serialize_in

if TYPE_CHECKING:
    from smsbridge.smsparser.parser import Report

SUBMIT = "submit"  # task kind: submit one inbound message to CHT


@dataclass(frozen=True)
class Accepted:
    uuid: str
    duplicate: bool


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def content_hash(sender: str, text: str) -> str:
    return hashlib.sha256(f"{sender}\x00{text}".encode()).hexdigest()[:32]


def accept_in(
    conn: sqlite3.Connection, messages: Sequence[InboundSms], now: float, dedup_window: float
) -> list[Accepted]:
    """Inside a write job: store each new message and its submit task; recognise duplicates
    (same carrier + external id; or, without an id, same carrier + sender + text within
    `dedup_window` seconds). A part of a long SMS is kept until its message is complete."""
    return accept_many_in(conn, [(messages, now)], dedup_window)[0]


def accept_many_in(
    conn: sqlite3.Connection,
    calls: Sequence[tuple[Sequence[InboundSms], float]],
    dedup_window: float,
) -> list[list[Accepted]]:
    """`accept_in` for several callers at once, each (its messages, its `now`): what each
    caller's messages became, in order. The messages that carry their carrier's id (nearly
    all) are looked up, stored and given their tasks in three statements for them all; a
    message without an id, or a part of a long SMS, on its own."""
    out: list[list[Accepted]] = [[] for _ in calls]
    keyed: list[tuple[int, int, InboundSms, float]] = []
    for i, (messages, now) in enumerate(calls):
        for j, sms in enumerate(messages):
            if sms.external_id and part_of(sms) is None:
                keyed.append((i, j, sms, now))
                out[i].append(Accepted("", duplicate=True))  # known below
            else:
                out[i].append(_accept_unkeyed_in(conn, sms, now, dedup_window))
    if not keyed:
        return out
    stored = _stored(conn, {(sms.carrier, str(sms.external_id)) for _, _, sms, _ in keyed})
    ids = _new_ids(len(keyed))
    rows, due = [], []
    for i, j, sms, now in keyed:
        key = (sms.carrier, str(sms.external_id))
        known = stored.get(key)
        if known is not None:  # a carrier's retry (or twice in this group): stored once
            out[i][j] = Accepted(known, duplicate=True)
            continue
        message_id = stored[key] = next(ids)
        rows.append(
            (message_id, sms.carrier, sms.external_id, sms.sender, sms.recipient, sms.text,
             _ms(sms.received_at), int(now * 1000), None)
        )  # fmt: skip
        due.append((message_id, now))
        out[i][j] = Accepted(message_id, duplicate=False)
    if rows:
        insert_rows(conn, _INSERT_MESSAGE_INTO, _MESSAGE_ROW, rows)
        tasks.enqueue_many_in(conn, SUBMIT, due)
    return out


def _stored(conn: sqlite3.Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(carrier, external id) -> uuid of the messages stored under those of `keys`."""
    found: dict[tuple[str, str], str] = {}
    by_carrier: dict[str, list[str]] = {}
    for carrier, external_id in keys:
        by_carrier.setdefault(carrier, []).append(external_id)
    for carrier, external_ids in by_carrier.items():
        for at in range(0, len(external_ids), _CHUNK):
            chunk = external_ids[at : at + _CHUNK]
            marks = ",".join("?" for _ in chunk)
            for row in conn.execute(
                f"SELECT external_id, uuid FROM messages WHERE carrier = ? "
                f"AND external_id IN ({marks})",
                (carrier, *chunk),
            ):
                found[(carrier, row[0])] = row[1]
    return found


_CHUNK = 500  # ids per look-up (well under SQLite's limit of bound parameters)


def _new_ids(count: int) -> Iterator[str]:
    """`count` new message uuids, time-ordered (RFC 9562 version 7: the time in milliseconds,
    then 74 random bits; their randomness read in one call). The uuid is the key of two indexes
    (`messages_uuid`, and `tasks_ref` through the submit task): random keys (version 4) put
    each new row on a page of its own in both, and a commit of a few dozen webhooks then
    wrote a few dozen pages per index; time-ordered keys go to the same last pages."""
    ms = time.time_ns() // 1_000_000 & _MS_BITS
    random = os.urandom(10 * count)
    for at in range(0, 10 * count, 10):
        bits = int.from_bytes(random[at : at + 10], "big")
        yield str(
            uuid.UUID(
                int=ms << 80
                | _VERSION_7
                | (bits >> 62 & 0xFFF) << 64  # 12 random bits after the version
                | _RFC_VARIANT
                | bits & _LOW_62  # 62 random bits after the variant
            )
        )


_MS_BITS = (1 << 48) - 1
_VERSION_7 = 0x7 << 76
_RFC_VARIANT = 0b10 << 62
_LOW_62 = (1 << 62) - 1


def _accept_unkeyed_in(
    conn: sqlite3.Connection, sms: InboundSms, now: float, dedup_window: float
) -> Accepted:
    """A message without its carrier's id (a duplicate is the same sender and text within
    `dedup_window` seconds), or a part of a long SMS."""
    if part_of(sms) is not None:
        return accept_part_in(conn, sms, now)
    digest = content_hash(sms.sender, sms.text)
    serialize_in(conn, "inbound-dedup", sms.carrier, sms.sender, digest)  # several bridges
    row = conn.execute(
        "SELECT uuid FROM messages WHERE carrier = ? AND sender = ? AND content_hash = ? "
        "AND external_id IS NULL AND accepted_at >= ? ORDER BY id DESC LIMIT 1",
        (sms.carrier, sms.sender, digest, int(now * 1000) - int(dedup_window * 1000)),
    ).fetchone()
    if row is not None:
        return Accepted(row[0], duplicate=True)
    message_id = insert_message_in(
        conn, sms.carrier, sms.external_id, sms.sender, sms.recipient, sms.text,
        _ms(sms.received_at), now, digest,
    )  # fmt: skip
    return Accepted(message_id, duplicate=False)


def insert_message_in(
    conn: sqlite3.Connection,
    carrier: str,
    external_id: str | None,
    sender: str,
    recipient: str | None,
    text: str,
    received_at_ms: int,
    now: float,
    digest: str | None = None,
) -> str:
    """Store one new message and its submit task; returns the message's uuid."""
    message_id = next(_new_ids(1))
    conn.execute(
        _INSERT_MESSAGE,
        (message_id, carrier, external_id, sender, recipient, text, received_at_ms,
         int(now * 1000), digest),
    )  # fmt: skip
    tasks.enqueue_in(conn, SUBMIT, message_id, now)
    return message_id


_INSERT_MESSAGE_INTO = (
    "INSERT INTO messages(uuid, carrier, external_id, sender, recipient, text, received_at, "
    "accepted_at, content_hash, state)"
)
_MESSAGE_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, 'received')"
_INSERT_MESSAGE = f"{_INSERT_MESSAGE_INTO} VALUES {_MESSAGE_ROW}"


# -- long SMS in parts ---------------------------------------------------------------------------
# Some carriers (Vonage) deliver a long SMS as separate parts, each with its own id, naming the
# long message in `extra`: `concat-ref` (shared by the parts), `concat-total`, `concat-part`
# (1-based). Each part is stored (and acknowledged) on arrival; when the last one is in, the
# parts are joined in order into ONE message with its submit task. If a part never comes, an
# `assemble` task joins what did arrive after PART_WAIT seconds.

ASSEMBLE = "assemble"  # task kind: join a long SMS whose parts stopped arriving
PART_WAIT = 600.0


def part_of(sms: InboundSms) -> tuple[str, int, int] | None:
    """(ref, part, total) when `sms` is one part of a long SMS of 2+ parts."""
    ref = sms.extra.get("concat-ref")
    try:
        total = int(sms.extra.get("concat-total", "1"))
        part = int(sms.extra.get("concat-part", "1"))
    except ValueError:
        return None
    if not ref or total < 2 or not 1 <= part <= total:
        return None
    return ref, part, total


def accept_part_in(conn: sqlite3.Connection, sms: InboundSms, now: float) -> Accepted:
    parsed = part_of(sms)
    assert parsed is not None
    ref, part, total = parsed
    # the parts of one SMS reaching several bridges at once: one joins them (smsbridge/store.py)
    serialize_in(conn, "inbound-parts", sms.carrier, sms.sender, ref)
    if sms.external_id:
        row = conn.execute(
            "SELECT id, message_uuid FROM inbound_parts WHERE carrier = ? AND external_id = ?",
            (sms.carrier, sms.external_id),
        ).fetchone()
        if row is not None:
            return Accepted(row["message_uuid"] or f"part-{row['id']}", duplicate=True)
    row = conn.execute(
        "SELECT id FROM inbound_parts WHERE carrier = ? AND sender = ? AND ref = ? AND part = ? "
        "AND message_uuid IS NULL",
        (sms.carrier, sms.sender, ref, part),
    ).fetchone()
    if row is not None:  # the same part again under another id
        return Accepted(f"part-{row['id']}", duplicate=True)
    cur = conn.execute(
        "INSERT INTO inbound_parts(carrier, sender, recipient, ref, part, total, external_id, "
        "text, received_at, accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (sms.carrier, sms.sender, sms.recipient, ref, part, total, sms.external_id, sms.text,
         _ms(sms.received_at), int(now * 1000)),
    )  # fmt: skip
    part_id = int(cur.fetchone()[0])
    pending = _pending_parts(conn, sms.carrier, sms.sender, ref)
    if len(pending) >= total:
        return Accepted(_join_in(conn, pending, now), duplicate=False)
    if len(pending) == 1:  # the first part of this long SMS: a deadline for the rest
        tasks.enqueue_in(conn, ASSEMBLE, str(part_id), now, not_before=now + PART_WAIT)
    return Accepted(f"part-{part_id}", duplicate=False)


def _pending_parts(
    conn: sqlite3.Connection, carrier: str, sender: str, ref: str, from_id: int = 0
) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT * FROM inbound_parts WHERE carrier = ? AND sender = ? AND ref = ? "
        "AND message_uuid IS NULL AND id >= ? ORDER BY part, id",
        (carrier, sender, ref, from_id),
    ).fetchall()


def _join_in(conn: sqlite3.Connection, parts: list[sqlite3.Row], now: float) -> str:
    first = parts[0]
    message_id = insert_message_in(
        conn,
        first["carrier"],
        "parts:" + ",".join(str(p["external_id"] or p["id"]) for p in parts),
        first["sender"],
        first["recipient"],
        "".join(p["text"] for p in parts),
        min(p["received_at"] for p in parts),
        now,
    )
    conn.executemany(
        "UPDATE inbound_parts SET message_uuid = ? WHERE id = ?",
        [(message_id, p["id"]) for p in parts],
    )
    return message_id


def assemble_in(conn: sqlite3.Connection, first_part_id: int, now: float) -> str | None:
    """The `assemble` task's step: join whatever parts of that long SMS arrived (None when it
    was already joined)."""
    first = conn.execute("SELECT * FROM inbound_parts WHERE id = ?", (first_part_id,)).fetchone()
    if first is None or first["message_uuid"] is not None:
        return None
    parts = _pending_parts(conn, first["carrier"], first["sender"], first["ref"], first_part_id)
    return _join_in(conn, parts, now) if parts else None


@dataclass(frozen=True)
class Message:
    id: int
    uuid: str
    carrier: str
    external_id: str | None
    sender: str
    text: str
    received_at: int  # ms
    accepted_at: int
    state: str
    form: str | None
    cht_doc_id: str | None
    reason: str | None
    reply: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Message:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


def record_body(message: Message, sender: str, report: Report, locale: str) -> dict[str, Any]:
    """The report as the JSON body of CHT's POST /api/v2/records: its fields, and in `_meta` the
    time the SMS arrived, the raw text and our id as `gateway_ref`."""
    body: dict[str, Any] = dict(report.fields)
    body["_meta"] = {
        "form": report.code,
        "from": sender,
        "reported_date": message.received_at,
        "locale": locale,
        "message": message.text,
        "gateway_ref": message.uuid,
    }
    return body


def gateway_message(message: Message, sender: str) -> dict[str, Any]:
    """The SMS as a gateway message in CHT's POST /api/sms, under our id (CHT drops ids it has
    seen, and those of records whose `_meta.gateway_ref` it is)."""
    return {
        "id": message.uuid,
        "from": sender,
        "content": message.text,
        "sms_sent": message.received_at,
        "sms_received": message.received_at,
    }


def get_message(store: Store, message_uuid: str) -> Message | None:
    rows = store.query("SELECT * FROM messages WHERE uuid = ?", (message_uuid,))
    return Message.from_row(rows[0]) if rows else None


def set_outcome_in(
    conn: sqlite3.Connection,
    message_uuid: str,
    state: str,
    *,
    form: str | None,
    doc_id: str | None,
) -> None:
    """Inside a write job: the message reached CHT (`submitted` as record `doc_id`, or
    `relayed`); the reason of an earlier failure (a dead letter replayed) no longer holds."""
    conn.execute(
        "UPDATE messages SET state = ?, form = ?, cht_doc_id = ?, reason = NULL WHERE uuid = ?",
        (state, form, doc_id, message_uuid),
    )


def mark_dead_in(conn: sqlite3.Connection, message_uuid: str, reason: str) -> None:
    """Inside a write job: the message will not reach CHT without an operator (`reason`)."""
    conn.execute(
        "UPDATE messages SET state = 'dead', reason = ? WHERE uuid = ?", (reason, message_uuid)
    )


def reject_in(
    conn: sqlite3.Connection, message_uuid: str, reason: str, reply: str, *, dead: bool
) -> None:
    """Inside a write job: the message is not submitted (`reason`); the sender is told `reply`.
    `rejected` for good, or, with `dead`, waiting for an operator like any dead letter."""
    conn.execute(
        "UPDATE messages SET state = ?, reason = ?, reply = ? WHERE uuid = ?",
        ("dead" if dead else "rejected", reason, reply, message_uuid),
    )


def count_from(store: Store, sender: str, since: float) -> int:
    """How many messages from `sender` were accepted at or after `since` (epoch seconds): the
    loop guard's measure of a burst (outbound/loopguard.py)."""
    rows = store.query(
        "SELECT COUNT(*) FROM messages WHERE sender = ? AND accepted_at >= ?",
        (sender, int(since * 1000)),
    )
    return int(rows[0][0])


# -- for operators: the console's lists and charts (smsbridge/web/console) -----------------------


def listing(
    store: Store,
    *,
    state: str | None = None,
    carrier: str | None = None,
    sender: str | None = None,
    accepted_after: float | None = None,
    accepted_before: float | None = None,
    limit: int = 50,
) -> list[Message]:
    """Inbound SMS, newest first, filtered (times in epoch seconds)."""
    where, params = matching(
        (
            ("state = ?", state),
            ("carrier = ?", carrier),
            ("sender = ?", sender),
            ("accepted_at >= ?", None if accepted_after is None else int(accepted_after * 1000)),
            ("accepted_at <= ?", None if accepted_before is None else int(accepted_before * 1000)),
        )
    )
    rows = store.query(
        f"SELECT * FROM messages WHERE {where} ORDER BY id DESC LIMIT ?", (*params, limit)
    )
    return [Message.from_row(row) for row in rows]


def hourly(store: Store, since: float) -> list[tuple[int, str, int]]:
    """(hour, state, count) of the SMS accepted since `since` (epoch seconds; `hour` counts
    whole hours from `since`), by the state each is in now."""
    rows = store.query(
        "SELECT (accepted_at - ?) / 3600000 AS hour, state, COUNT(*) FROM messages "
        "WHERE accepted_at >= ? GROUP BY hour, state",
        (int(since * 1000), int(since * 1000)),
    )
    return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]


# -- retention (smsbridge/retention.py) -----------------------------------------------------------

FINISHED = ("submitted", "relayed", "rejected")
"""States a message never leaves: it may be pruned once old enough (never `received` or
`dead`, nor one with a task)."""


def _prunable(columns: str) -> str:
    """SELECT `columns` of the finished messages accepted before a time (ms), without a task."""
    marks = ", ".join("?" for _ in FINISHED)
    return (
        f"SELECT {columns} FROM messages WHERE accepted_at < ? AND state IN ({marks}) "
        f"AND NOT {tasks.has_task_sql('?', 'messages.uuid')}"
    )


def _prunable_params(before: float) -> tuple[object, ...]:
    return (int(before * 1000), *FINISHED, SUBMIT)


def prune_in(conn: sqlite3.Connection, before: float, limit: int) -> dict[str, int]:
    """Inside a write job: delete up to `limit` finished messages accepted before `before`
    (epoch seconds), with the parts they were joined from. Returns how many rows, by table."""
    uuids = [
        row[0]
        for row in conn.execute(_prunable("uuid") + " LIMIT ?", (*_prunable_params(before), limit))
    ]
    if not uuids:
        return {"messages": 0, "inbound_parts": 0}
    marks = ",".join("?" for _ in uuids)
    parts = conn.execute(f"DELETE FROM inbound_parts WHERE message_uuid IN ({marks})", uuids)
    gone = conn.execute(f"DELETE FROM messages WHERE uuid IN ({marks})", uuids)
    return {"messages": gone.rowcount, "inbound_parts": parts.rowcount}


def prunable_in(conn: sqlite3.Connection, before: float) -> dict[str, int]:
    """What `prune_in` would delete, all batches together (`smsbridge prune --dry-run`)."""
    params = _prunable_params(before)
    messages = conn.execute(_prunable("COUNT(*)"), params).fetchone()[0]
    parts = conn.execute(
        f"SELECT COUNT(*) FROM inbound_parts WHERE message_uuid IN ({_prunable('uuid')})", params
    ).fetchone()[0]
    return {"messages": int(messages), "inbound_parts": int(parts)}


def last_inbound_channel(conn: sqlite3.Connection, sender: str, since: float) -> str | None:
    """The carrier the latest SMS from `sender` accepted at or after `since` (epoch seconds)
    came in on, or None: where a reply to it goes (outbound/send.py, SMSBRIDGE_REPLY_CHANNEL)."""
    row = conn.execute(
        "SELECT carrier FROM messages WHERE sender = ? AND accepted_at >= ? "
        "ORDER BY accepted_at DESC, id DESC LIMIT 1",
        (sender, int(since * 1000)),
    ).fetchone()
    return None if row is None else str(row[0])
