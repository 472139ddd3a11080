"""What a job sees on PostgreSQL (smsbridge/postgres/store.py): a psycopg connection spoken to as
the jobs speak to `sqlite3.Connection` (`?` placeholders, rows by name or index, booleans as 0 or
1), opened with the timeouts of smsbridge/postgres/url.py, its failures as the bridge means them:
DatabaseUnavailable (503 with Retry-After) for a server or connection that fails, integrity and data
errors without the DETAIL that quotes the row (an SMS's text and number). Deadlocks, serialization
failures and lock timeouts go up as they are: the writer handles them."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus

from smsbridge.errors import ConfigError, Unavailable
from smsbridge.logs import event
from smsbridge.postgres import url as dburl

log = logging.getLogger(__name__)

DIALECT = "postgresql"
RETRY_BATCH = (pgerrors.SerializationFailure, pgerrors.DeadlockDetected)
_FOR_THE_WRITER = (*RETRY_BATCH, pgerrors.LockNotAvailable)  # what the writer itself handles


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
        with _translated():
            return self.raw.execute(convert(sql, named), params)

    def executemany(self, sql: str, seq: Any) -> Any:
        with _translated():
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
    """The PostgreSQL server went away while the bridge runs (a restart, a failover), or kept
    a lock past smsbridge/postgres/store.py's LOCK_TIMEOUT: the request is refused with 503 and
    Retry-After, naming no host (the log has the reason)."""

    def __init__(self) -> None:
        super().__init__("the database is unavailable: try again shortly")
        self.headers = {"Retry-After": "5"}


def unavailable(exc: BaseException) -> DatabaseUnavailable:
    """`exc` (a psycopg error the caller cannot act on), logged, as the 503 it means."""
    event(log, "database_unavailable", logging.WARNING, error=reason_of(exc))
    refused = DatabaseUnavailable()
    refused.__cause__ = exc
    return refused


def reason_of(exc: BaseException) -> str:
    """What to say about `exc` in a log or a message: its class, and its text unless it may
    quote the URL (libpq's parser repeats the part it refuses, a password included)."""
    if isinstance(exc, psycopg.ProgrammingError) or not str(exc).strip():
        return type(exc).__name__
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Around a statement: deadlocks and lock timeouts go up as they are (the writer runs the
    batch again); any other operational failure (a lost connection, a cancelled statement) is
    DatabaseUnavailable; an integrity or data error loses its DETAIL, which quotes the row (an
    SMS's text and number) into whatever logs the error."""
    try:
        yield
    except _FOR_THE_WRITER:
        raise
    except psycopg.OperationalError as exc:
        raise unavailable(exc) from exc
    except pgerrors.IntegrityError as exc:  # the constraint's name: no value of the row
        raise type(exc)(exc.diag.message_primary or type(exc).__name__) from None
    except pgerrors.DataError as exc:  # its message may quote the value
        raise type(exc)(f"{type(exc).__name__} (SQLSTATE {exc.sqlstate})") from None


def connect(
    url: str,
    *,
    read_only: bool = False,
    starting: bool = False,
    lock_timeout: str = "",
    setting: str = "SMSBRIDGE_DATABASE",
) -> PgConnection:
    """A connection to `url` in autocommit mode (transactions are begun explicitly, as on
    SQLite), returning `PgRow`s, with the timeouts and keepalives of smsbridge/postgres/url.py
    unless the URL sets its own; `lock_timeout`: how long its statements wait for a lock.
    When the server cannot be reached or the URL is refused: ConfigError while `starting`
    (the operator's to fix, naming `setting`), DatabaseUnavailable later (a request to
    retry). Neither repeats the URL's password."""
    try:
        raw = psycopg.connect(
            autocommit=True, row_factory=_row_factory, **dburl.connection_params(url)
        )
    except psycopg.Error as exc:
        if not starting:
            raise unavailable(exc) from None
        raise ConfigError(
            f"{setting}: cannot connect to PostgreSQL {dburl.masked(url)} ({_why(exc)})"
        ) from None
    raw.adapters.register_dumper(bool, _BoolAsInt)
    raw.adapters.register_loader("numeric", _Number)
    if read_only:
        raw.execute("SET default_transaction_read_only = on")
    conn = PgConnection(raw)
    if lock_timeout:
        wait_for_locks(conn, lock_timeout)
    return conn


def wait_for_locks(conn: PgConnection, timeout: str) -> None:
    """`conn`'s statements wait at most `timeout` for a lock (then LockNotAvailable)."""
    conn.raw.execute("SELECT set_config('lock_timeout', %s, false)", (timeout,))


def _why(exc: psycopg.Error) -> str:
    if isinstance(exc, psycopg.ProgrammingError):  # libpq's parser quotes what it refuses
        return (
            "libpq cannot read this URL: write a %, @, / or space in the password as %25, "
            "%40, %2F or %20"
        )
    return reason_of(exc)
