"""Inbound SMS as stored facts: accepting them (each with its submit task, duplicates
recognised) inside a store write job, and reading them back.

A message's `uuid` is our id for it: the gateway id CHT sees on a relay and the
`_meta.gateway_ref` of a record. States: received -> submitted | relayed | rejected | dead.
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from smsbridge.outbox import Outbox
from smsbridge.sms import InboundSms
from smsbridge.store import Store

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
    `dedup_window` seconds)."""
    out: list[Accepted] = []
    now_ms = int(now * 1000)
    for sms in messages:
        digest = None
        if sms.external_id:
            row = conn.execute(
                "SELECT uuid FROM messages WHERE carrier = ? AND external_id = ?",
                (sms.carrier, sms.external_id),
            ).fetchone()
        else:
            digest = content_hash(sms.sender, sms.text)
            row = conn.execute(
                "SELECT uuid FROM messages WHERE carrier = ? AND sender = ? AND content_hash = ? "
                "AND external_id IS NULL AND accepted_at >= ? ORDER BY id DESC LIMIT 1",
                (sms.carrier, sms.sender, digest, now_ms - int(dedup_window * 1000)),
            ).fetchone()
        if row is not None:
            out.append(Accepted(row[0], duplicate=True))
            continue
        message_id = str(uuid.uuid4())
        conn.execute(
            "INSERT INTO messages(uuid, carrier, external_id, sender, recipient, text, "
            "received_at, accepted_at, content_hash, state) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'received')",
            (
                message_id,
                sms.carrier,
                sms.external_id,
                sms.sender,
                sms.recipient,
                sms.text,
                _ms(sms.received_at),
                now_ms,
                digest,
            ),
        )
        Outbox.enqueue_in(conn, SUBMIT, message_id, now)
        out.append(Accepted(message_id, duplicate=False))
    return out


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


def get_message(store: Store, message_uuid: str) -> Message | None:
    rows = store.query("SELECT * FROM messages WHERE uuid = ?", (message_uuid,))
    return Message.from_row(rows[0]) if rows else None
