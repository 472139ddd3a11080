"""The database schema: `MIGRATIONS`, run in order by `run_migrations` when the service opens
the store.

New tables or columns are a NEW migration appended at the end; one that has shipped is never
edited (docs/architecture.md, rule 10). `PRAGMA user_version` records how many have run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from smsbridge.errors import ConfigError

Migration = Callable[[sqlite_utils.Database], None]


def _m001_inbound(db: sqlite_utils.Database) -> None:
    """Inbound messages (facts) and the durable task queue (work)."""
    db.table("messages").create(
        {
            "id": int,  # arrival order
            "uuid": str,  # our message id: the gateway id CHT sees, and _meta.gateway_ref
            "carrier": str,
            "external_id": str,  # the carrier's id; NULL when the carrier gives none
            "sender": str,
            "recipient": str,
            "text": str,
            "received_at": int,  # ms since the epoch: when the carrier says the SMS arrived
            "accepted_at": int,  # ms: when we committed it
            "content_hash": str,  # for the no-id duplicate window
            "state": str,  # received | submitted | relayed | rejected | dead
            "form": str,
            "cht_doc_id": str,
            "reason": str,  # why rejected / dead-lettered
            "reply": str,  # a reply to the sender we decided on (see pipeline: replies)
        },
        pk="id",
        not_null={"uuid", "carrier", "sender", "text", "received_at", "accepted_at", "state"},
    )
    db.execute("CREATE UNIQUE INDEX messages_uuid ON messages(uuid)")
    db.execute(
        "CREATE UNIQUE INDEX messages_carrier_external_id ON messages(carrier, external_id) "
        "WHERE external_id IS NOT NULL"
    )
    db.execute(
        "CREATE INDEX messages_dedup ON messages(carrier, sender, content_hash, accepted_at) "
        "WHERE external_id IS NULL"
    )
    db.table("tasks").create(
        {
            "id": int,  # arrival order: claims take the lowest due id first
            "kind": str,
            "ref": str,  # what the task is about (a message uuid, ...)
            "state": str,  # ready | leased | dead
            "attempts": int,  # claims so far
            "not_before": float,  # epoch seconds: due from then on
            "lease_until": float,
            "last_error": str,
            "memo": str,  # what the last attempt wants the next one to know
            "dead_reason": str,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
        not_null={"kind", "ref", "state", "attempts", "not_before", "created_at", "updated_at"},
        defaults={"attempts": 0},
    )
    db.execute("CREATE INDEX tasks_due ON tasks(state, kind, not_before)")
    db.execute("CREATE INDEX tasks_ref ON tasks(kind, ref)")
    db.table("kv").create({"key": str, "value": str, "updated_at": float}, pk="key")


def _m002_outbound(db: sqlite_utils.Database) -> None:
    """Outgoing SMS (CHT's, keyed by CHT's id, and the bridge's own replies), the status reports
    owed to CHT (one row per message and state: reported exactly once), and carrier delivery
    reports (kept even when they name a message we cannot match yet)."""
    db.execute(
        "CREATE TABLE outgoing ("
        " id INTEGER PRIMARY KEY,"  # arrival order
        " ref TEXT NOT NULL,"  # CHT's message id (or ours for the bridge's replies): unique
        " origin TEXT NOT NULL,"  # cht | bridge
        " to_number TEXT NOT NULL,"
        " content TEXT NOT NULL,"
        " text_key TEXT NOT NULL,"  # digest of (to, content): the loop guard's key
        " segments INTEGER NOT NULL,"
        " encoding TEXT NOT NULL,"  # gsm7 | ucs2
        " automatic INTEGER NOT NULL DEFAULT 1,"  # an automatic reply (loop guard burst rule)
        " state TEXT NOT NULL,"  # sms.DeliveryState
        " reason TEXT,"
        " channel TEXT,"  # the channel it is routed to now (failover moves it)
        " carrier TEXT,"  # the carrier module of the channel that accepted it
        " external_id TEXT,"  # that carrier's id for it
        " phone_ack INTEGER NOT NULL DEFAULT 0,"  # a cht-gateway phone reported a status
        " released INTEGER NOT NULL DEFAULT 0,"  # an operator released it from the loop guard
        " source TEXT,"  # the inbound message uuid a bridge reply answers
        " created_at REAL NOT NULL,"
        " updated_at REAL NOT NULL,"
        " sent_at REAL)"
    )
    db.execute("CREATE UNIQUE INDEX outgoing_ref ON outgoing(ref)")
    db.execute("CREATE INDEX outgoing_text_key ON outgoing(text_key, created_at)")
    db.execute(
        "CREATE INDEX outgoing_external ON outgoing(carrier, external_id) "
        "WHERE external_id IS NOT NULL"
    )
    db.execute("CREATE INDEX outgoing_state ON outgoing(state, channel)")
    db.execute(
        "CREATE TABLE outgoing_reports ("
        " id INTEGER PRIMARY KEY, ref TEXT NOT NULL, status TEXT NOT NULL, reason TEXT,"
        " created_at REAL NOT NULL, reported_at REAL)"
    )
    db.execute("CREATE UNIQUE INDEX outgoing_reports_once ON outgoing_reports(ref, status)")
    db.execute(
        "CREATE INDEX outgoing_reports_due ON outgoing_reports(id) WHERE reported_at IS NULL"
    )
    db.execute(
        "CREATE TABLE delivery_reports ("
        " id INTEGER PRIMARY KEY, carrier TEXT NOT NULL, external_id TEXT, ref TEXT,"
        " state TEXT NOT NULL, carrier_status TEXT, reason TEXT, received_at REAL NOT NULL,"
        " outgoing_id INTEGER)"
    )
    db.execute(
        "CREATE INDEX delivery_reports_unmatched ON delivery_reports(carrier, external_id) "
        "WHERE outgoing_id IS NULL"
    )
    # the loop guard counts recent inbound SMS per sender
    db.execute("CREATE INDEX messages_sender_accepted ON messages(sender, accepted_at)")


def _m003_inbound_parts(db: sqlite_utils.Database) -> None:
    """Parts of long inbound SMS, kept until the whole message is in (inbox.py)."""
    db.execute(
        "CREATE TABLE inbound_parts ("
        " id INTEGER PRIMARY KEY,"
        " carrier TEXT NOT NULL, sender TEXT NOT NULL, recipient TEXT,"
        " ref TEXT NOT NULL,"  # the carrier's reference shared by the parts
        " part INTEGER NOT NULL, total INTEGER NOT NULL,"
        " external_id TEXT, text TEXT NOT NULL,"
        " received_at INTEGER NOT NULL, accepted_at INTEGER NOT NULL,"
        " message_uuid TEXT)"  # the joined message, once there is one
    )
    db.execute(
        "CREATE UNIQUE INDEX inbound_parts_external ON inbound_parts(carrier, external_id) "
        "WHERE external_id IS NOT NULL"
    )
    db.execute(
        "CREATE INDEX inbound_parts_pending ON inbound_parts(carrier, sender, ref) "
        "WHERE message_uuid IS NULL"
    )


def _m004_tasks_arrival_index(db: sqlite_utils.Database) -> None:
    """Claiming in arrival order walks an index instead of sorting every ready task."""
    db.execute("CREATE INDEX tasks_arrival ON tasks(state, kind, id)")


def _m005_task_ids_never_reused(db: sqlite_utils.Database) -> None:
    """Task ids are never handed out twice (AUTOINCREMENT): a dead-letter id an operator noted
    in a ticket can never later retry or drop a different message."""
    db.execute(
        """CREATE TABLE tasks_new (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            ref TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            not_before REAL NOT NULL,
            lease_until REAL,
            last_error TEXT,
            memo TEXT,
            dead_reason TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )
    db.execute(
        "INSERT INTO tasks_new (id, kind, ref, state, attempts, not_before, lease_until, "
        "last_error, memo, dead_reason, created_at, updated_at) SELECT id, kind, ref, state, "
        "attempts, not_before, lease_until, last_error, memo, dead_reason, created_at, "
        "updated_at FROM tasks"
    )
    db.execute("DROP TABLE tasks")
    db.execute("ALTER TABLE tasks_new RENAME TO tasks")
    db.execute("CREATE INDEX tasks_due ON tasks(state, kind, not_before)")
    db.execute("CREATE INDEX tasks_ref ON tasks(kind, ref)")
    db.execute("CREATE INDEX tasks_arrival ON tasks(state, kind, id)")


def _m104_outgoing_attempts(db: sqlite_utils.Database) -> None:
    """A send that may have reached its carrier is never sent again blindly: the claim records
    the attempt (when, on which channel) before the carrier is called, every outcome clears it,
    and an attempt found still open (a crash, a lost lease) or a send that timed out makes the
    SMS ambiguous since then (outbound/send.py)."""
    for column in ("attempt_started_at REAL", "attempt_channel TEXT", "ambiguous_since REAL"):
        db.execute(f"ALTER TABLE outgoing ADD COLUMN {column}")


def _m111_console_audit(db: sqlite_utils.Database) -> None:
    """What operators did in the console (smsbridge/web/console/audit.py): who, when, which
    action on which message or task."""
    db.execute(
        "CREATE TABLE console_audit ("
        " id INTEGER PRIMARY KEY,"
        " at REAL NOT NULL,"  # epoch seconds
        " actor TEXT NOT NULL,"  # the CHT user name
        " action TEXT NOT NULL,"  # viewed | retry | drop | release
        " target TEXT NOT NULL,"  # inbound | outgoing | task
        " ref TEXT NOT NULL,"  # the message's uuid / ref, or the task id
        " message TEXT,"  # the message the target is about (uuid or ref), for its page
        " outcome TEXT)"  # done | refused: why
    )
    db.execute("CREATE INDEX console_audit_message ON console_audit(message, id)")


def _m107_retention(db: sqlite_utils.Database) -> None:
    """Retention (smsbridge/retention.py): how many rows were pruned, per kind, kept after the
    rows are gone; and the indexes that let the pruning walk only old rows, a small batch at a
    time."""
    db.execute(
        "CREATE TABLE retention_totals ("
        " kind TEXT PRIMARY KEY,"  # a table pruned: messages, outgoing, ...
        " pruned INTEGER NOT NULL DEFAULT 0,"
        " updated_at REAL NOT NULL)"
    )
    db.execute("CREATE INDEX messages_accepted ON messages(accepted_at)")
    db.execute(
        "CREATE INDEX inbound_parts_message ON inbound_parts(message_uuid) "
        "WHERE message_uuid IS NOT NULL"
    )
    db.execute("CREATE INDEX outgoing_updated ON outgoing(updated_at)")
    db.execute("CREATE INDEX delivery_reports_outgoing ON delivery_reports(outgoing_id)")
    db.execute("CREATE INDEX delivery_reports_received ON delivery_reports(received_at)")


def _m113_reply_lanes(db: sqlite_utils.Database) -> None:
    """Replies go first (outbound/messages.py `Lanes`): `lead`, the seconds an SMS ranks ahead
    of its due time, on its send task (claimed by `not_before - lead`: smsbridge/tasks.py
    `claim_in`, one index seek per lane) and on the SMS (a phone's hand-out order)."""
    db.execute("ALTER TABLE tasks ADD COLUMN lead REAL NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX tasks_lane ON tasks(state, kind, lead, not_before)")
    db.execute("ALTER TABLE outgoing ADD COLUMN lead REAL NOT NULL DEFAULT 0")


def _m203_outgoing_parts(db: sqlite_utils.Database) -> None:
    """Split mode (outbound/parts.py): a long SMS sent as standalone numbered SMS, one row per
    part, each with its own ref (the one the carrier gets), carrier id and delivery state."""
    db.execute(
        "CREATE TABLE outgoing_parts ("
        " id INTEGER PRIMARY KEY,"
        " outgoing_id INTEGER NOT NULL,"  # the SMS it is part of (outgoing.id)
        " part INTEGER NOT NULL,"  # k of `k/N `, from 1
        " parts INTEGER NOT NULL,"  # N
        " ref TEXT NOT NULL,"  # our ref for this part: `<the SMS's ref>.<k>`
        " content TEXT NOT NULL,"  # the text sent, its `k/N ` label included
        " state TEXT NOT NULL,"  # sms.DeliveryState
        " reason TEXT,"
        " channel TEXT,"  # the channel that accepted it
        " carrier TEXT,"  # its carrier module
        " external_id TEXT,"  # that carrier's id for it
        " sent_at REAL,"
        " updated_at REAL NOT NULL)"
    )
    db.execute("CREATE UNIQUE INDEX outgoing_parts_ref ON outgoing_parts(ref)")
    db.execute("CREATE UNIQUE INDEX outgoing_parts_of ON outgoing_parts(outgoing_id, part)")
    db.execute(
        "CREATE INDEX outgoing_parts_external ON outgoing_parts(carrier, external_id) "
        "WHERE external_id IS NOT NULL"
    )


def _m106_rate_buckets(db: sqlite_utils.Database) -> None:
    """Rate buckets shared by the bridges on one database (smsbridge/outbound/ratebuckets.py):
    each channel's tokens and when they were counted. Only PostgreSQL deployments use it (on
    SQLite one bridge holds the buckets in memory); both schemas have it, as they have every
    table."""
    db.execute(
        "CREATE TABLE rate_buckets ("
        " channel TEXT PRIMARY KEY,"
        " tokens REAL NOT NULL,"  # segments available at `stamp` (negative: booked ahead)
        " stamp REAL NOT NULL)"  # the sending bridges' clock, seconds
    )


MIGRATIONS: list[Migration] = [
    _m001_inbound,
    _m002_outbound,
    _m003_inbound_parts,
    _m004_tasks_arrival_index,
    _m005_task_ids_never_reused,
    _m104_outgoing_attempts,
    _m111_console_audit,
    _m107_retention,
    _m113_reply_lanes,
    _m203_outgoing_parts,
    _m106_rate_buckets,
    # Append new migrations here (never edit one above).
]


def schema_version(path: Path) -> int:
    """The schema version of the database file at `path`, read without changing it;
    ConfigError when the file is not an SQLite database."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise not_a_database(path, exc) from exc


def not_a_database(path: Path | str, exc: Exception) -> ConfigError:
    return ConfigError(f"SMSBRIDGE_DATABASE: {str(path)!r} is not an SQLite database ({exc})")


UPGRADE = "run `smsbridge migrate` (or start `smsbridge serve`) to upgrade it"


def schema_mismatch(
    where: str, version: int, *, setting: str = "SMSBRIDGE_DATABASE", upgrade: str = UPGRADE
) -> str | None:
    """What keeps this release from a database (`where`, as messages name it) at schema
    `version`, on either engine: older (`upgrade` says what to do), newer (only the release
    that wrote it may use it); None when it is this release's."""
    latest = len(MIGRATIONS)
    if version < latest:
        return (
            f"{setting}: {where} has schema version {version}, this smsbridge needs {latest}: "
            f"{upgrade}"
        )
    if version > latest:
        return (
            f"{setting}: {where} has schema version {version}, newer than this smsbridge knows "
            f"({latest}): use the smsbridge release that wrote it"
        )
    return None


def run_migrations(conn: sqlite3.Connection) -> int:
    """Run the migrations this database has not seen yet; returns the schema version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):  # a newer release's database: never touch it
        raise ConfigError(str(schema_mismatch("the database", version)))
    db = sqlite_utils.Database(conn)
    for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            migration(db)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return int(conn.execute("PRAGMA user_version").fetchone()[0])
