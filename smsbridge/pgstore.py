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
  not told "done", so nothing acknowledged is lost).

Jobs see a `PgConnection`: it speaks like `sqlite3.Connection` (`execute` with `?` placeholders,
rows by name or index), so the record modules write their SQL once, in the subset both engines
accept. Where the engines really differ a job asks `dialect_of(conn)` (smsbridge/store.py).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerrors
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus

from smsbridge import pgschema
from smsbridge.errors import ConfigError, Unavailable
from smsbridge.logs import event
from smsbridge.store import Job, Store, StoreClosed, _Entry, _settle

T = TypeVar("T")
log = logging.getLogger(__name__)

DIALECT = "postgresql"
BATCH_RETRIES = 5  # a batch that keeps losing deadlocks fails after this many runs
_RETRY_BATCH = (pgerrors.SerializationFailure, pgerrors.DeadlockDetected)


# -- what jobs see --------------------------------------------------------------------------------


class PgRow:
    """A result row as `sqlite3.Row` offers it: by index, by column name, `keys()`, `dict(row)`."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._index, self._values, strict=False))!r})"


def _row_factory(cursor: Any) -> Any:
    names = [column.name for column in cursor.description or ()]
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)  # as sqlite3.Row: the first column of a name wins

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(values, index)

    return make


class _BoolAsInt(Dumper):
    """SQLite has no booleans: our columns of flags are integers, so a Python bool goes in as
    0 or 1, as it does in SQLite."""

    oid = psycopg.postgres.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


class _Number(Loader):
    """`numeric` (what SUM of integers gives) as int or float, as SQLite would, never Decimal."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode("ascii")
        try:
            return int(text)
        except ValueError:
            return float(text)


_INDEX_HINT = re.compile(r"\s+INDEXED\s+BY\s+\w+", re.IGNORECASE)


@functools.lru_cache(maxsize=2048)
def convert(sql: str, named: bool = False) -> str:
    """`sql` as written for SQLite (`?` or `:name` placeholders) in psycopg's words (`%s`,
    `%(name)s`): `%` doubled, placeholders inside quotes left alone, and SQLite's index hints
    (`INDEXED BY`, which PostgreSQL has no use for) removed."""
    sql = _INDEX_HINT.sub("", sql)
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":  # a literal or a quoted name: copied as is ('' and "" included)
            end = sql.find(c, i + 1)
            while end != -1 and end + 1 < n and sql[end + 1] == c:
                end = sql.find(c, end + 2)
            end = n - 1 if end == -1 else end
            out.append(sql[i : end + 1].replace("%", "%%"))
            i = end + 1
            continue
        if c == "%":
            out.append("%%")
        elif c == "?" and not named:
            out.append("%s")
        elif (
            c == ":"
            and named
            and i + 1 < n
            and (sql[i + 1].isalpha() or sql[i + 1] == "_")
            and sql[i - 1 : i] != ":"  # `x::text` is a cast
        ):
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            out.append(f"%({sql[i + 1 : j]})s")
            i = j
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


class PgConnection:
    """A psycopg connection, spoken to as the jobs speak to `sqlite3.Connection`."""

    dialect = DIALECT

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        named = isinstance(params, dict)
        try:
            return self.raw.execute(convert(sql, named), params)
        except psycopg.OperationalError as exc:
            if self.broken:  # the connection is gone (not a deadlock: that one is retried)
                event(log, "database_unavailable", logging.WARNING, error=str(exc).strip())
                raise DatabaseUnavailable() from exc
            raise

    def executemany(self, sql: str, seq: Any) -> Any:
        cursor = self.raw.cursor()
        cursor.executemany(convert(sql), list(seq))
        return cursor

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()

    @property
    def broken(self) -> bool:
        return self.raw.closed or self.raw.broken


class DatabaseUnavailable(Unavailable):
    """The PostgreSQL server went away while the bridge runs (a restart, a failover): the
    request is refused with 503 and Retry-After, naming no host (the log has the reason)."""

    def __init__(self) -> None:
        super().__init__("the database is unavailable: try again shortly")
        self.headers = {"Retry-After": "5"}


def connect(url: str, *, read_only: bool = False, starting: bool = False) -> PgConnection:
    """A connection to `url` in autocommit mode (transactions are begun explicitly, as on
    SQLite), returning `PgRow`s. When the server cannot be reached: ConfigError while
    `starting` (the operator's to fix), DatabaseUnavailable later (a request to retry)."""
    try:
        raw = psycopg.connect(url, autocommit=True, row_factory=_row_factory)
    except psycopg.OperationalError as exc:
        if not starting:
            event(log, "database_unavailable", logging.WARNING, error=str(exc).strip())
            raise DatabaseUnavailable() from exc
        raise ConfigError(f"SMSBRIDGE_DATABASE: cannot connect to PostgreSQL ({exc})") from exc
    raw.adapters.register_dumper(bool, _BoolAsInt)
    raw.adapters.register_loader("numeric", _Number)
    if read_only:
        raw.execute("SET default_transaction_read_only = on")
    return PgConnection(raw)


def redacted(url: str) -> str:
    """`url` with its password hidden, for messages."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1****@", url)


# -- the store -----------------------------------------------------------------------------------


class PgStore(Store):
    """A PostgreSQL database behind the `Store` API: one writer thread with group commit, one
    reader connection per thread. (A `Store`, so everything typed for one takes it; it keeps
    the queueing, the reads and the key/value facts, and brings its own connections, batch
    and lock.)"""

    dialect = DIALECT

    def __init__(self, url: str, *, max_batch: int = 512, migrate: bool = True) -> None:
        self.url = url
        self.name = redacted(url)
        self._pg = connect(url, starting=True)
        try:
            if migrate:
                self.version = pgschema.run_pg_migrations(self._pg.raw, self.name)
            else:
                self.version = self._expect_current()
        except BaseException:
            self._pg.close()
            raise
        self._writer = self._pg  # type: ignore[assignment]  # Store.close closes it
        self._max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Entry | None] = queue.SimpleQueue()
        self._local = threading.local()
        self._readers = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self.batches = 0
        self.jobs_done = 0
        self.batch_retries = 0  # batches run again after a deadlock or serialization failure
        self._thread = threading.Thread(
            target=self._run, name="smsbridge-pgstore-writer", daemon=True
        )
        self._thread.start()

    def _expect_current(self) -> int:
        version = pgschema.schema_version(self._pg.raw)
        latest = len(pgschema.PG_MIGRATIONS)
        if version < latest:
            raise ConfigError(
                f"SMSBRIDGE_DATABASE: {self.name} has schema version {version}, this smsbridge "
                f"needs {latest}: run `smsbridge migrate` (or start `smsbridge serve`) to "
                "upgrade it"
            )
        if version > latest:
            raise pgschema.newer_schema(self.name, version, latest)
        return version

    # -- writing: a batch per transaction ---------------------------------------------------------

    def _commit_batch(self, conn: Any, batch: list[_Entry]) -> None:
        started = [entry for entry in batch if entry.start()]
        savepoints = False  # first run: leading rerunnable jobs without savepoints
        attempt = 0
        while True:
            try:
                if self._pg.broken:
                    self._pg = self._writer = connect(self.url)  # type: ignore[assignment]
                outcomes = self._run_batch(started, savepoints)
            except _RetryWithSavepoints:
                savepoints = True
                continue
            except _RETRY_BATCH as exc:
                self.batch_retries += 1
                attempt += 1
                if attempt == BATCH_RETRIES:
                    _settle([(entry, False, exc) for entry in started])
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
                except _RETRY_BATCH:
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
            except _RETRY_BATCH:
                raise
            except BaseException as exc:
                if conn.broken:
                    raise
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                if isinstance(exc, pgerrors.UniqueViolation) and run + 1 < runs:
                    continue
                return (entry, False, exc)
            conn.execute("RELEASE job")
            return (entry, True, result)
        raise AssertionError("unreachable")

    # -- reading ---------------------------------------------------------------------------------

    def reader(self) -> sqlite3.Connection:
        """This thread's read connection (autocommit: each statement sees every commit)."""
        conn: PgConnection | None = getattr(self._local, "conn", None)
        if conn is None or conn.broken:
            if self._closed:
                raise StoreClosed("store is closed")
            conn = connect(self.url, read_only=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)  # type: ignore[arg-type]
        return conn  # type: ignore[return-value]

    # -- one process at a time -----------------------------------------------------------------

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Whether this process holds the lock `name` among every bridge on this database
        (PostgreSQL's advisory lock, in this schema, on a connection of its own for the
        block's life: no home-made election; False: another bridge holds it now)."""
        conn = self._lock_connection()
        (held,) = conn.execute(
            "SELECT pg_try_advisory_lock(hashtext(current_schema()), hashtext(?))", (name,)
        ).fetchone()
        try:
            yield bool(held)
        finally:
            if held and not conn.broken:
                conn.execute(
                    "SELECT pg_advisory_unlock(hashtext(current_schema()), hashtext(?))", (name,)
                )

    def transact(self, job: Job[T]) -> T:
        """Run `job` at once in a short transaction of its own, on this thread's side
        connection, outside the writer's batches: for a row that bridges take turns on for a
        moment (outbound/ratebuckets.py), where waiting for the next group commit would hold
        the caller up."""
        conn = self._lock_connection()
        with conn.raw.transaction():
            return job(conn)  # type: ignore[arg-type]

    def _lock_connection(self) -> PgConnection:
        conn: PgConnection | None = getattr(self._local, "locks", None)
        if conn is None or conn.broken:
            if self._closed:
                raise StoreClosed("store is closed")
            conn = connect(self.url)
            self._local.locks = conn
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
    if version > len(pgschema.PG_MIGRATIONS):
        return [pgschema.newer_schema(redacted(url), version, len(pgschema.PG_MIGRATIONS)).detail]
    return []
