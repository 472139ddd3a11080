"""SQLite storage: schema migrations, one writer with group commit, readers.

Every write is a job — a function of the writer connection — handed to ONE writer thread. The
writer drains whatever jobs are waiting, runs them in one transaction (each inside its own
SAVEPOINT, so one failing job does not spoil the others), commits once (`synchronous=FULL`: on
disk, not just in the OS cache) and only then resolves each job's future. Concurrent webhook
requests therefore share one fsync, and none of them hears "done" before its rows are durable
(DESIGN.md rule 1).

    await store.write(fn)       from async code (webhooks, workers)
    store.write_sync(fn)        from sync code (CLI, tests)
    store.read(fn)              a read on this thread's own connection (WAL: never blocks writes)

Schema changes are appended to `MIGRATIONS`, never edited once shipped (DESIGN.md rule 10).
`PRAGMA user_version` records how many have run. OUTBOUND appends its outgoing tables at the end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]
Migration = Callable[[sqlite_utils.Database], None]


# -- migrations ----------------------------------------------------------------------------------


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


MIGRATIONS: list[Migration] = [
    _m001_inbound,
    _m002_outbound,
    _m003_inbound_parts,
    # Append new migrations here (never edit one above).
]


def migrate(conn: sqlite3.Connection) -> int:
    """Run the migrations this database has not seen yet; returns the schema version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
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


def _connect(path: Path | str) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


# -- the store -----------------------------------------------------------------------------------


class StoreClosed(RuntimeError):
    pass


class _Entry:
    """A queued job and where its outcome goes: a concurrent future (sync callers) or an
    asyncio future of `loop` (async callers)."""

    __slots__ = ("future", "job", "loop")

    def __init__(
        self,
        job: Job[Any],
        future: concurrent.futures.Future[Any] | asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.job = job
        self.future = future
        self.loop = loop

    def start(self) -> bool:
        """False when the caller gave up (cancelled) before the job ran: skip it."""
        if isinstance(self.future, concurrent.futures.Future):
            return self.future.set_running_or_notify_cancel()
        return not self.future.cancelled()


def _settle(outcomes: list[tuple[_Entry, bool, Any]]) -> None:
    """Hand each outcome to its caller: sync futures directly, asyncio futures with ONE
    thread-safe call per event loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]] = {}
    for entry, ok, value in outcomes:
        if entry.loop is None:
            future = entry.future
            if not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        else:
            by_loop.setdefault(entry.loop, []).append((entry.future, ok, value))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_settle_in_loop, items)


def _settle_in_loop(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in items:
        if future.done():  # cancelled meanwhile
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class Store:
    """The SQLite database: one writer thread with group commit, one reader per thread."""

    def __init__(self, path: Path | str, *, max_batch: int = 512) -> None:
        self.path = Path(path)
        self._writer = _connect(self.path)
        mode = self._writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal" and str(self.path) != ":memory:":
            raise RuntimeError(f"could not switch {self.path} to WAL (got {mode})")
        self._writer.execute("PRAGMA synchronous = FULL")
        self.version = migrate(self._writer)
        self._max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Entry | None] = queue.SimpleQueue()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self.batches = 0  # commits made (observability / tests of group commit)
        self.jobs_done = 0
        self._thread = threading.Thread(
            target=self._run, name="smsbridge-store-writer", daemon=True
        )
        self._thread.start()

    # -- writing ---------------------------------------------------------------------------------

    def submit(self, job: Job[T]) -> concurrent.futures.Future[T]:
        """Queue `job` for the writer; the future resolves after its transaction is committed."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._put(_Entry(job, future, None))
        return future

    async def write(self, job: Job[T]) -> T:
        """Run `job` in the writer's next transaction; return its result once committed.
        (The writer wakes the event loop once per batch, not once per job.)"""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put(_Entry(job, future, loop))
        return await future

    def write_sync(self, job: Job[T]) -> T:
        return self.submit(job).result()

    def _put(self, entry: _Entry) -> None:
        if self._closed:
            raise StoreClosed("store is closed")
        self._jobs.put(entry)

    def _run(self) -> None:
        conn = self._writer
        while True:
            first = self._jobs.get()
            if first is None:
                break
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit_batch(conn, batch)
            if stop:
                break

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Entry]) -> None:
        outcomes: list[tuple[_Entry, bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for entry in batch:
                if not entry.start():
                    continue
                conn.execute("SAVEPOINT job")
                try:
                    result = entry.job(conn)
                except BaseException as exc:
                    if not conn.in_transaction:  # the error ended the whole transaction
                        raise
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((entry, False, exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((entry, True, result))
            conn.execute("COMMIT")
        except BaseException as exc:  # the commit itself failed: nothing of this batch is stored
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            _settle([(entry, False, exc) for entry in batch])
            return
        self.batches += 1
        self.jobs_done += len(outcomes)
        _settle(outcomes)

    # -- reading ---------------------------------------------------------------------------------

    def reader(self) -> sqlite3.Connection:
        """This thread's read connection (sees every committed write)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreClosed("store is closed")
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def read(self, job: Job[T]) -> T:
        return job(self.reader())

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return self.reader().execute(sql, params).fetchall()

    # -- key/value facts (cached settings, forms, ...) -----------------------------------------

    def get_kv(self, key: str) -> str | None:
        row = self.reader().execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def put_kv(conn: sqlite3.Connection, key: str, value: str, now: float) -> None:
        conn.execute(
            "INSERT INTO kv(key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) "
            "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, value, now),
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        self._thread.join(timeout=30)
        self._writer.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
