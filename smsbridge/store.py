"""SQLite storage: one writer with group commit, and readers.

Every write is a job — a function of the writer connection — handed to ONE writer thread. The
writer drains whatever jobs are waiting, runs them in one transaction (each inside its own
SAVEPOINT, so one failing job does not spoil the others), commits once (`synchronous=FULL`: on
disk, not just in the OS cache) and only then resolves each job's future. Concurrent webhook
requests therefore share one fsync, and none of them hears "done" before its rows are durable
(docs/architecture.md, rule 1). The background loops' jobs (`BACKGROUND`: sends, their outcomes,
CHT exchanges), which come one by one, may wait up to SMSBRIDGE_COMMIT_WAIT for others to share
their commit while writes have lately been coming together (`Gathering`).

A savepoint copies every page its job touches into a statement journal: a large part of a small
job's cost. A job written with `rerunnable=True` (no effect but on the database, so running it
again after a rollback is harmless: the webhooks' accept job) runs without one while the batch
has held only such jobs; if one of them fails, the whole transaction is rolled back and those
jobs run again, each in its savepoint.

    await store.write(fn)       from async code (webhooks, workers)
    store.write_sync(fn)        from sync code (CLI, tests)
    store.read(fn)              a read on this thread's own connection (WAL: never blocks writes)
    await store.off_loop(f)     from async code: a read (PostgreSQL: on a thread)
    async with store.turn(n)    from async code: the work `n` one bridge at a time does (True)

Opening a store for the service brings its schema up to date (migrations.py); the CLI's
commands open it with `migrate=False` and refuse a schema of another version instead of changing
it behind the operator's back. A new database file is created readable by its owner only (0600:
it holds health data); SQLite gives its -wal and -shm files the same mode.

`backup(path, dest)` writes a consistent copy of a live database into one self-contained file.

SMSBRIDGE_DATABASE may instead be a `postgresql://` URL: `open_store(database)` then opens a
`PgStore` (smsbridge/postgres/store.py), the same API on PostgreSQL, for several bridges on one
database. Jobs are written once for both; where the engines really differ they branch on
`dialect_of(conn)`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from smsbridge.errors import ConfigError
from smsbridge.migrations import not_a_database, run_migrations, schema_mismatch

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
_URL_SCHEMES = ("postgresql://", "postgres://")
COMMIT_WAIT = 0.01  # seconds; the default of SMSBRIDGE_COMMIT_WAIT (`Gathering`)
COMPANY_HOLD = 1.0  # seconds the writer keeps waiting for company after it last had some


def is_postgres_url(database: object) -> bool:
    """Does SMSBRIDGE_DATABASE name a PostgreSQL database (a URL) rather than an SQLite file?"""
    return isinstance(database, str) and database.lower().startswith(_URL_SCHEMES)


def dialect_of(conn: object) -> str:
    """`"sqlite"` or `"postgresql"`: the engine behind a job's connection (or a store)."""
    return str(getattr(conn, "dialect", SQLITE))


def serialize_in(conn: object, *key: str) -> None:
    """Inside a write job: wait while another bridge's transaction holds `key`, then hold it
    until this transaction ends, so check-then-insert work on one key (no unique key to catch
    a race) sees what the other bridge committed. PostgreSQL's transaction advisory lock, in
    this schema (as PgStore.exclusive's: deployments in two schemas of one database do not
    wait for each other); on SQLite nothing to do: its one writer runs every job of the
    database in turn."""
    if dialect_of(conn) == POSTGRESQL:
        conn.execute(  # type: ignore[attr-defined]
            "SELECT pg_advisory_xact_lock(hashtext(current_schema()), hashtext(?))",
            ("\x1f".join(key),),
        )


def matching(conditions: Iterable[tuple[str, object | None]]) -> tuple[str, list[object]]:
    """A listing's WHERE clause and its parameters, from the conditions whose value is given:
    `(("state = ?", "held"), ("channel = ?", None))` -> `("1 = 1 AND state = ?", ["held"])`."""
    given = [(clause, value) for clause, value in conditions if value is not None]
    return " AND ".join(["1 = 1", *(c for c, _ in given)]), [v for _, v in given]


def insert_rows(conn: Any, insert: str, row: str, rows: Sequence[Sequence[object]]) -> None:
    """`insert` (`INSERT INTO t(a, b)`) of every one of `rows`, each written `row` (`(?, ?)`),
    in one statement per ROWS_PER_INSERT rows rather than one per row (`executemany`): the
    database takes them in one step, and the writer thread takes the GIL back once, not once
    per row, from an event loop that is busy serving."""
    for at in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[at : at + ROWS_PER_INSERT]
        conn.execute(
            f"{insert} VALUES {','.join([row] * len(chunk))}",
            [value for values in chunk for value in values],
        )


ROWS_PER_INSERT = 100  # rows per statement: at most 1,000 parameters for our tables


def open_store(
    database: Path | str,
    *,
    migrate: bool = True,
    max_batch: int = 512,
    commit_wait: float = COMMIT_WAIT,
) -> Store:
    """The store of SMSBRIDGE_DATABASE: an SQLite `Store` for a path, a `PgStore` (the same
    API: smsbridge/postgres/store.py) for a `postgresql://` URL. PostgreSQL needs the `postgres`
    extra (psycopg); without it, a URL is a ConfigError."""
    if not is_postgres_url(database):
        return Store(database, migrate=migrate, max_batch=max_batch, commit_wait=commit_wait)
    try:
        from smsbridge.postgres.store import PgStore
    except ImportError as exc:
        raise ConfigError(
            "SMSBRIDGE_DATABASE is a PostgreSQL URL but psycopg is not installed: "
            "pip install 'smsbridge[postgres]'"
        ) from exc
    return PgStore(str(database), migrate=migrate, max_batch=max_batch, commit_wait=commit_wait)


def _create_private(path: Path) -> None:
    """Create an empty database file only its owner can read and write, unless it exists (or
    is SQLite's in-memory name)."""
    if str(path) == ":memory:" or path.exists():
        return
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _connect(path: Path | str) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _expect_current(conn: sqlite3.Connection, path: Path) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    problem = schema_mismatch(repr(str(path)), version)
    if problem is not None:
        conn.close()
        raise ConfigError(problem)
    return version


def backup(source: Path | str, dest: Path | str) -> int:
    """Copy the live database `source` into `dest`, consistently (SQLite's online backup, in
    one read transaction: writers go on meanwhile) and self-contained (no -wal file needed:
    the copy is switched to a rollback journal). `dest` is written 0600 beside its final name
    and renamed into place, so a crash never leaves a half copy under that name. Returns the
    copy's size in bytes."""
    final = Path(dest)
    if final.is_dir():
        raise ConfigError(f"{str(final)!r} is a directory: name the backup file to write")
    partial = final.with_name(final.name + ".partial")
    partial.unlink(missing_ok=True)
    _create_private(partial)
    src = _connect(source)
    try:
        copy = sqlite3.connect(str(partial), isolation_level=None)
        try:
            src.backup(copy)
            copy.execute("PRAGMA journal_mode = DELETE")
            (check,) = copy.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise RuntimeError(f"the copy failed its integrity check: {check}")
        finally:
            copy.close()
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)  # no stray copy of health data left behind
        raise
    finally:
        src.close()
    return final.stat().st_size


# -- the store -----------------------------------------------------------------------------------


class StoreClosed(RuntimeError):
    pass


BACKGROUND: ContextVar[bool] = ContextVar("smsbridge_background", default=False)
"""True in the service's background loops (workers.py sets it in each): their writes may wait
for company (`Gathering`); nobody waits on them but the loop itself."""


class Gathering:
    """How long the writer waits for more jobs before it commits a batch (group commit).

    A commit costs the same for one job as for fifty (an fsync, the locks, waking the threads
    that wait), and the background loops' jobs come singly: a send claimed, its outcome, the
    next claim, each a moment apart. While jobs have lately been coming together (a batch of
    two or more), the writer keeps a batch of background jobs (`BACKGROUND`) open while more
    keep coming, each within `gap` (a fifth of `wait`) of the last, for up to `wait` seconds
    from its first job. A job someone waits on (a webhook's, a phone's, an operator's) closes
    the batch: it is committed as soon as the writer gets to it, as ever. A lone writer (the
    CLI, a quiet bridge: no company for COMPANY_HOLD seconds) never waits either."""

    def __init__(self, wait: float) -> None:
        self.wait = max(0.0, wait)
        self.gap = self.wait / 5
        self._company_until = 0.0

    def deadline(self, now: float) -> float:
        """Until when, at most, the batch whose first job was taken at `now` takes more."""
        return now + self.wait if now < self._company_until else now

    def had(self, jobs: int, now: float) -> None:
        """The batch closed at `now` held `jobs` jobs."""
        if jobs > 1:
            self._company_until = now + COMPANY_HOLD


class _Entry:
    """A queued job and where its outcome goes: a concurrent future (sync callers) or an
    asyncio future of `loop` (async callers)."""

    __slots__ = ("background", "future", "job", "loop", "rerunnable")

    def __init__(
        self,
        job: Job[Any],
        future: concurrent.futures.Future[Any] | asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop | None,
        rerunnable: bool = False,
        background: bool = False,
    ) -> None:
        self.job = job
        self.future = future
        self.loop = loop
        self.rerunnable = rerunnable
        self.background = background

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

    dialect = SQLITE

    def __init__(
        self,
        path: Path | str,
        *,
        max_batch: int = 512,
        migrate: bool = True,
        commit_wait: float = COMMIT_WAIT,
    ) -> None:
        """Open (creating, 0600) the database at `path`. `migrate=False`: leave the schema as
        it is, and raise ConfigError unless it is the version this code expects.
        `commit_wait`: see `Gathering` (SMSBRIDGE_COMMIT_WAIT)."""
        self.path = Path(path)
        self.name = str(self.path)  # what logs and messages call the database
        _create_private(self.path)
        self._writer = _connect(self.path)
        try:
            mode = self._writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.DatabaseError as exc:  # a file that is not a database
            self._writer.close()
            raise not_a_database(self.path, exc) from exc
        if str(mode).lower() != "wal" and str(self.path) != ":memory:":
            raise RuntimeError(f"could not switch {self.path} to WAL (got {mode})")
        self._writer.execute("PRAGMA synchronous = FULL")
        if migrate:
            self.version = run_migrations(self._writer)
        else:
            self.version = _expect_current(self._writer, self.path)
        self._max_batch = max_batch
        self._gathering = Gathering(commit_wait)
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

    async def write(self, job: Job[T], *, rerunnable: bool = False) -> T:
        """Run `job` in the writer's next transaction; return its result once committed.
        (The writer wakes the event loop once per batch, not once per job.) `rerunnable`:
        `job` does nothing but read and write the database, so it may be run again after a
        rollback (see the module doc): it then costs no savepoint."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put(_Entry(job, future, loop, rerunnable, BACKGROUND.get()))
        return await future

    def write_sync(self, job: Job[T]) -> T:
        return self.submit(job).result()

    def _put(self, entry: _Entry) -> None:
        if self._closed:
            raise StoreClosed("store is closed")
        self._jobs.put(entry)

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                break
            batch, stop = self._gather(first)
            self._commit_batch(self._writer, batch)
            if stop:
                break

    def _gather(self, first: _Entry) -> tuple[list[_Entry], bool]:
        """`first` and the jobs behind it, up to max_batch: those waiting now and, while every
        one is a background job, those that come before the batch's deadline (`Gathering`);
        and whether `close` asked the writer to stop (after this batch)."""
        batch = [first]
        now = time.monotonic()
        deadline = self._gathering.deadline(now) if first.background else now
        while len(batch) < self._max_batch:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                left = min(deadline - time.monotonic(), self._gathering.gap)
                if left <= 0:
                    break
                try:
                    item = self._jobs.get(timeout=left)
                except queue.Empty:
                    break
            if item is None:
                return batch, True
            batch.append(item)
            if not item.background:  # someone waits on it: no more waiting
                deadline = 0.0
        self._gathering.had(len(batch), time.monotonic())
        return batch, False

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Entry]) -> None:
        started = [entry for entry in batch if entry.start()]
        # the leading rerunnable jobs, optimistically without savepoints
        lead = 0
        while lead < len(started) and started[lead].rerunnable:
            lead += 1
        if lead:
            try:
                conn.execute("BEGIN IMMEDIATE")
                results = [entry.job(conn) for entry in started[:lead]]
            except BaseException:  # one failed: roll back, run them again one savepoint each
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            else:
                outcomes = [(e, True, r) for e, r in zip(started[:lead], results, strict=True)]
                self._finish_batch(conn, started, lead, outcomes, begun=True)
                return
        self._finish_batch(conn, started, 0, [], begun=False)

    def _finish_batch(
        self,
        conn: sqlite3.Connection,
        batch: list[_Entry],
        done: int,
        outcomes: list[tuple[_Entry, bool, Any]],
        *,
        begun: bool,
    ) -> None:
        """Run the jobs of `batch` after the first `done` (whose `outcomes` are in, inside the
        transaction already `begun`), each in its savepoint; commit; settle every outcome."""
        try:
            if not begun:
                conn.execute("BEGIN IMMEDIATE")
            for entry in batch[done:]:
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

    async def off_loop(self, call: Callable[[], T]) -> T:
        """`call` (a read, or anything else that waits on this store's database), from async
        code. On SQLite it runs at once: a read of a local file in WAL mode takes
        microseconds and never waits for a writer. PgStore runs it on a thread, so that a slow
        or lost server holds up that call, not the event loop."""
        return call()

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

    # -- one process at a time -----------------------------------------------------------------

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Whether this process may do the work `name` that only one bridge may do at a time
        (the CHT sync): always, on SQLite, where `smsbridge serve` holds the database alone
        (smsbridge/dblock.py); PgStore answers with an advisory lock."""
        yield True

    @contextlib.asynccontextmanager
    async def turn(self, name: str) -> AsyncIterator[bool]:
        """`exclusive(name)` from async code: taken and given back through `off_loop`, so that
        a stalled PostgreSQL server holds up this turn, not the event loop."""
        held = self.exclusive(name)
        ours = await self.off_loop(held.__enter__)
        try:
            yield ours
        finally:
            await self.off_loop(lambda: held.__exit__(None, None, None))

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
