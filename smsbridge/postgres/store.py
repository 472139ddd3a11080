"""PostgreSQL storage: the `Store` API of smsbridge/store.py on a PostgreSQL database, so
several bridges can share one (SMSBRIDGE_DATABASE=postgresql://...; `store.open_store`).

The driver is psycopg 3: its synchronous API fits the store's model as it is (a write job is a
plain function of a connection, run on the writer thread; each reading thread has its own
connection), where an async-only driver would mean rewriting every job.

The model is the SQLite store's: ONE writer thread drains the jobs waiting, runs them in one
transaction, each inside its own SAVEPOINT (rerunnable jobs optimistically without one, as in
smsbridge/store.py), commits once and then resolves each job's future (docs/architecture.md,
rule 1). What differs is that other processes write the same rows:

- a batch that loses a deadlock or a serialization check to another bridge is rolled back and
  run again as a whole (jobs are written to be run again: rule 2, and the SQLite store reruns
  its rerunnable ones too);
- a rerunnable job that hits a unique key another bridge has just committed (two bridges
  accepting the same webhook at once) runs once more in its savepoint, where it now sees that
  row and takes the duplicate path;
- the writer reconnects after losing its connection (the batch then fails: its callers were
  not told "done", so nothing acknowledged is lost);
- another session may keep a row or key for long (a bridge whose machine was lost mid-batch,
  until the server gives its connection up): the writer waits LOCK_TIMEOUT at most, then the
  job that waited fails alone with DatabaseUnavailable (503), the rest of the batch committed.

Whatever else goes wrong with the server or the connection reaches callers as
DatabaseUnavailable (503 with Retry-After), and an integrity or data error without its DETAIL
(which quotes the row). Connections give up on a silent server (smsbridge/postgres/url.py).

Jobs see a `PgConnection` (smsbridge/postgres/connection.py): it speaks like `sqlite3.Connection`
(`execute` with `?` placeholders, rows by name or index), so the record modules write their SQL
once, in the subset both engines accept. Where the engines really differ a job asks
`dialect_of(conn)` (smsbridge/store.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerrors

from smsbridge.errors import ConfigError
from smsbridge.migrations import schema_mismatch
from smsbridge.postgres import schema as pgschema
from smsbridge.postgres import url as dburl
from smsbridge.postgres.connection import (
    DIALECT,
    RETRY_BATCH,
    DatabaseUnavailable,
    PgConnection,
    connect,
    reason_of,
    unavailable,
    wait_for_locks,
)
from smsbridge.store import COMMIT_WAIT, Gathering, Job, Store, StoreClosed, _Entry, _settle

T = TypeVar("T")

BATCH_RETRIES = 5  # a batch that keeps losing deadlocks fails after this many runs
LOCK_TIMEOUT = "2s"  # the longest the writer waits for a row or key another session holds
OFF_LOOP_THREADS = 8  # reads from async code at once (each thread has its own connection)


# -- the store -----------------------------------------------------------------------------------


class PgStore(Store):
    """A PostgreSQL database behind the `Store` API: one writer thread with group commit, one
    reader connection per thread. (A `Store`, so everything typed for one takes it; it keeps
    the queueing, the reads and the key/value facts, and brings its own connections, batch
    and lock.)"""

    dialect = DIALECT

    def __init__(
        self,
        url: str,
        *,
        max_batch: int = 512,
        migrate: bool = True,
        commit_wait: float = COMMIT_WAIT,
    ) -> None:
        self.url = url
        self.name = dburl.masked(url)
        self._pg = connect(url, starting=True)
        try:
            if migrate:
                self.version = pgschema.run_pg_migrations(self._pg.raw, self.name)
            else:
                self.version = self._expect_current()
            wait_for_locks(self._pg, LOCK_TIMEOUT)  # not while migrating: bridges take turns
        except BaseException:
            self._pg.close()
            raise
        self._writer = self._pg  # type: ignore[assignment]  # Store.close closes it
        self._max_batch = max_batch
        self._gathering = Gathering(commit_wait)
        self._jobs: queue.SimpleQueue[_Entry | None] = queue.SimpleQueue()
        self._local = threading.local()
        self._readers = []
        self._readers_lock = threading.Lock()
        self._exclusive_held: set[str] = set()  # the names this process holds (exclusive)
        self._exclusive_conns: dict[str, PgConnection] = {}
        # off_loop's threads: its own, so that a stalled server ties up none of the event
        # loop's default executor (which resolves host names for every HTTP client)
        self._off_loop = concurrent.futures.ThreadPoolExecutor(
            max_workers=OFF_LOOP_THREADS, thread_name_prefix="smsbridge-pgstore-read"
        )
        self._closed = False
        self.batches = 0
        self.jobs_done = 0
        self.batch_retries = 0  # batches run again after a deadlock, serialization failure
        # or lock timeout
        self._thread = threading.Thread(
            target=self._run, name="smsbridge-pgstore-writer", daemon=True
        )
        self._thread.start()

    def _expect_current(self) -> int:
        version = pgschema.schema_version(self._pg.raw)
        problem = schema_mismatch(self.name, version)
        if problem is not None:
            raise ConfigError(problem)
        return version

    # -- writing: a batch per transaction ---------------------------------------------------------

    def _commit_batch(self, conn: Any, batch: list[_Entry]) -> None:
        started = [entry for entry in batch if entry.start()]
        savepoints = False  # first run: leading rerunnable jobs without savepoints
        attempt = 0
        while True:
            try:
                if self._pg.broken:
                    self._pg = self._writer = connect(  # type: ignore[assignment]
                        self.url, lock_timeout=LOCK_TIMEOUT
                    )
                outcomes = self._run_batch(started, savepoints)
            except _RetryWithSavepoints:
                savepoints = True
                continue
            except RETRY_BATCH as exc:
                self.batch_retries += 1
                attempt += 1
                if attempt == BATCH_RETRIES:
                    failed = unavailable(exc)
                    _settle([(entry, False, failed) for entry in started])
                    return
                time.sleep(0.005 * attempt)
                continue
            except BaseException as exc:  # the commit (or the connection) failed: nothing stored
                _settle([(entry, False, exc) for entry in started])
                return
            self.batches += 1
            self.jobs_done += len(outcomes)
            _settle(outcomes)
            return

    def _run_batch(self, batch: list[_Entry], savepoints: bool) -> list[tuple[_Entry, bool, Any]]:
        conn = self._pg
        outcomes: list[tuple[_Entry, bool, Any]] = []
        conn.execute("BEGIN")
        try:
            bare = not savepoints
            for entry in batch:
                bare = bare and entry.rerunnable
                if not bare:
                    outcomes.append(self._run_in_savepoint(conn, entry))
                    continue
                try:
                    outcomes.append((entry, True, entry.job(conn)))  # type: ignore[arg-type]
                except RETRY_BATCH:
                    raise
                except BaseException:
                    raise _RetryWithSavepoints() from None
            conn.execute("COMMIT")
        except BaseException:
            if not conn.broken and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes

    @staticmethod
    def _run_in_savepoint(conn: PgConnection, entry: _Entry) -> tuple[_Entry, bool, Any]:
        runs = 2 if entry.rerunnable else 1  # see the module doc: a unique key just taken
        for run in range(runs):
            conn.execute("SAVEPOINT job")
            try:
                result = entry.job(conn)  # type: ignore[arg-type]
            except RETRY_BATCH:
                raise
            except BaseException as exc:
                if conn.broken:
                    raise
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                if isinstance(exc, pgerrors.UniqueViolation) and run + 1 < runs:
                    continue
                if isinstance(exc, pgerrors.LockNotAvailable):
                    # a row or key another session keeps past LOCK_TIMEOUT (a bridge lost
                    # mid-batch): this job alone fails, with a 503; the batch goes on
                    return (entry, False, unavailable(exc))
                return (entry, False, exc)
            conn.execute("RELEASE job")
            return (entry, True, result)
        raise AssertionError("unreachable")

    # -- reading ---------------------------------------------------------------------------------

    def reader(self) -> sqlite3.Connection:
        """This thread's read connection (autocommit: each statement sees every commit)."""
        return self._thread_connection("conn", read_only=True)  # type: ignore[return-value]

    async def off_loop(self, call: Callable[[], T]) -> T:
        """`call` on one of this store's threads (Store.off_loop): a slow or lost server then
        holds up that call, not the event loop (every webhook, /healthz)."""
        return await asyncio.get_running_loop().run_in_executor(self._off_loop, call)

    def close(self) -> None:
        super().close()
        self._off_loop.shutdown(wait=False, cancel_futures=True)

    # -- one process at a time -----------------------------------------------------------------

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Whether this process holds the lock `name` among every bridge on this database
        (PostgreSQL's advisory lock, in this schema, on a connection of its own kept for that
        name: no home-made election). False: another bridge holds it now, or this process
        does already (a nested or concurrent block of this process: the lock is not
        re-entrant)."""
        with self._readers_lock:
            mine = name not in self._exclusive_held
            self._exclusive_held.add(name)
        if not mine:
            yield False
            return
        try:
            conn = self._exclusive_conns.get(name)
            if conn is None or conn.broken:
                conn = self._exclusive_conns[name] = self._open()
            (held,) = conn.execute(
                "SELECT pg_try_advisory_lock(hashtext(current_schema()), hashtext(?))", (name,)
            ).fetchone()
            try:
                yield bool(held)
            finally:
                if held and not conn.broken:
                    with contextlib.suppress(DatabaseUnavailable):  # gone: so is the lock
                        conn.execute(
                            "SELECT pg_advisory_unlock(hashtext(current_schema()), hashtext(?))",
                            (name,),
                        )
        finally:
            with self._readers_lock:
                self._exclusive_held.discard(name)

    def transact(self, job: Job[T]) -> T:
        """Run `job` at once in a short transaction of its own, on this thread's side
        connection, outside the writer's batches: for a row that bridges take turns on for a
        moment (outbound/ratebuckets.py), where waiting for the next group commit would hold
        the caller up. A lock held past LOCK_TIMEOUT, a deadlock or a lost connection is
        DatabaseUnavailable (a 503), as in the writer."""
        conn = self._thread_connection("side")
        try:
            with conn.raw.transaction():
                return job(conn)  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            raise unavailable(exc) from exc

    def _thread_connection(self, kind: str, *, read_only: bool = False) -> PgConnection:
        """This thread's connection of `kind`, opened (again) when it has none or lost it."""
        conn: PgConnection | None = getattr(self._local, kind, None)
        if conn is None or conn.broken:
            conn = self._open(read_only=read_only)
            setattr(self._local, kind, conn)
        return conn

    def _open(self, *, read_only: bool = False) -> PgConnection:
        """A new connection of this store, closed with it (one that writes waits LOCK_TIMEOUT
        at most for a lock, as the writer does)."""
        if self._closed:
            raise StoreClosed("store is closed")
        conn = connect(
            self.url, read_only=read_only, lock_timeout="" if read_only else LOCK_TIMEOUT
        )
        with self._readers_lock:
            self._readers.append(conn)  # type: ignore[arg-type]
        return conn


class _RetryWithSavepoints(Exception):
    """A job of the optimistic run (no savepoints) failed: run the batch again, each job in its
    savepoint, so only that job's work is lost."""


# -- for the CLI ---------------------------------------------------------------------------------


def schema_version_at(url: str) -> int:
    """The schema version of the PostgreSQL database at `url`, read without changing it."""
    conn = connect(url, starting=True)
    try:
        return pgschema.schema_version(conn.raw)
    finally:
        conn.close()


def problems(url: str) -> list[str]:
    """What keeps the bridge from using the PostgreSQL database at `url` (check-config)."""
    try:
        version = schema_version_at(url)
    except ConfigError as exc:
        return [exc.detail]
    except psycopg.Error as exc:  # connected, but the schema could not be read (permissions)
        return [
            f"SMSBRIDGE_DATABASE: cannot read the schema version of {dburl.masked(url)} "
            f"({reason_of(exc)})"
        ]
    if version > len(pgschema.PG_MIGRATIONS):  # an older one `serve` upgrades
        return [str(schema_mismatch(dburl.masked(url), version))]
    return []
