"""SQLite storage: one writer with group commit, and readers.

Every write is a job — a function of the writer connection — handed to ONE writer thread. The
writer drains whatever jobs are waiting, runs them in one transaction (each inside its own
SAVEPOINT, so one failing job does not spoil the others), commits once (`synchronous=FULL`: on
disk, not just in the OS cache) and only then resolves each job's future. Concurrent webhook
requests therefore share one fsync, and none of them hears "done" before its rows are durable
(DESIGN.md rule 1).

    await store.write(fn)       from async code (webhooks, workers)
    store.write_sync(fn)        from sync code (CLI, tests)
    store.read(fn)              a read on this thread's own connection (WAL: never blocks writes)

Opening a store brings its schema up to date (migrations.py).
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

from smsbridge.migrations import migrate

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]


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
