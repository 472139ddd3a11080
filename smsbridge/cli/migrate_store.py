"""`smsbridge migrate-store --to postgresql://… [--from PATH]`: copy a bridge's SQLite database
(default: SMSBRIDGE_DATABASE's file) into an empty PostgreSQL database, for a deployment that
grows from one bridge into several (README, "Running more than one bridge").

It refuses (exit 2, nothing written) when the source is not an smsbridge SQLite database of this
release's schema (`smsbridge migrate` it first), when `smsbridge serve` runs on it (the lock of
smsbridge/dblock.py, held for the whole copy so none starts meanwhile), when the target holds
rows or tables of its own, or when its schema version differs from the source's. An empty target
gets the schema first (smsbridge/postgres/schema.py); then every table is copied in ONE PostgreSQL
transaction, under an exclusive lock on every table (a bridge started on the target waits), with
its ids as they are; each identity sequence is moved past the highest id the table ever handed
out (SQLite's AUTOINCREMENT counter included: a task id is never reused). It prints the rows
copied per table. The source is only read.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, TextIO

from smsbridge.dblock import hold_database
from smsbridge.errors import ConfigError, UsageError
from smsbridge.migrations import schema_mismatch, schema_version
from smsbridge.postgres.url import masked
from smsbridge.store import is_postgres_url

# PostgreSQL column types whose values SQLite may hold as an integral REAL (1.7e9)
_INTEGERS = frozenset({"bigint", "integer", "smallint"})


def migrate_store_command(target: str, source: Path | None, out: TextIO) -> int:
    if not is_postgres_url(target):
        raise UsageError("--to takes a PostgreSQL URL: postgresql://user:password@host/database")
    source = source or _configured_source()
    if not source.is_file():
        raise ConfigError(f"--from: no SQLite database at {str(source)!r}")
    version = schema_version(source)  # ConfigError when it is not an SQLite database
    _expect_current(source, version)
    try:
        from smsbridge.postgres.connection import connect
    except ImportError as exc:
        raise ConfigError(
            "copying into PostgreSQL needs psycopg: pip install 'smsbridge[postgres]'"
        ) from exc

    where = masked(target)
    with contextlib.ExitStack() as stack:
        _hold(stack, source)
        pg = stack.enter_context(closing(connect(target, starting=True, setting="--to"))).raw
        lite = stack.enter_context(closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)))
        counts = copy_database(lite, pg, version, where)
    width = max((len(name) for name in counts), default=0)
    print(f"copied {source} (schema version {version}) into {where}:", file=out)
    for name, count in counts.items():
        print(f"  {name:<{width}}  {count}", file=out)
    print(f"  {'total':<{width}}  {sum(counts.values())}", file=out)
    return 0


def _hold(stack: contextlib.ExitStack, source: Path) -> None:
    """Hold the source's lock (smsbridge/dblock.py) until the copy ends."""
    try:
        stack.enter_context(hold_database(source))
    except ConfigError as exc:
        raise ConfigError(
            f"{exc.detail}\nmigrate-store copies a database nobody writes: stop `smsbridge "
            "serve` first (a copy taken while it runs would miss what it writes next)"
        ) from None


def _configured_source() -> Path:
    from smsbridge.settings import Settings

    database = Settings.from_env().database
    if is_postgres_url(database):
        raise UsageError(
            "SMSBRIDGE_DATABASE is a PostgreSQL URL already: name the SQLite file with --from"
        )
    return Path(database)


def _expect_current(source: Path, version: int) -> None:
    if version == 0:
        raise ConfigError(f"--from: {str(source)!r} is not an smsbridge database (no schema)")
    where, upgrade = repr(str(source)), "run `smsbridge migrate` on it first"
    problem = schema_mismatch(where, version, setting="--from", upgrade=upgrade)
    if problem is not None:
        raise ConfigError(problem)


# -- the copy ------------------------------------------------------------------------------------


def copy_database(lite: sqlite3.Connection, pg: Any, version: int, where: str) -> dict[str, int]:
    """Copy every table of `lite` (SQLite, schema `version`) into the empty database behind
    `pg` (a psycopg connection in autocommit mode), in one transaction; rows per table."""
    from smsbridge.postgres import schema as pgschema

    _prepare_target(pg, version, where)
    tables = [
        name
        for (name,) in lite.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' "
            "ORDER BY name"
        )
    ]
    columns = _pg_columns(pg)
    counts: dict[str, int] = {}
    lite.execute("BEGIN")  # one consistent read of the source
    try:
        with pg.transaction():
            for name in columns:
                pg.execute(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE')
            _expect_empty(pg, [n for n in columns if n != pgschema.VERSION_TABLE], where)
            for table in tables:
                counts[table] = _copy_table(lite, pg, table, columns.get(table), where)
            _advance_sequences(lite, pg)
    finally:
        lite.execute("ROLLBACK")
    return counts


def _prepare_target(pg: Any, version: int, where: str) -> None:
    """Give an empty target the schema; refuse one of another version or with tables of its
    own."""
    from smsbridge.postgres import schema as pgschema

    found = pgschema.schema_version(pg)
    if found == 0:
        tables = list(_pg_columns(pg))
        if tables:
            raise ConfigError(
                f"--to: {where} is not empty (tables {', '.join(sorted(tables)[:5])}): "
                "migrate-store writes only into an empty database"
            )
        found = pgschema.run_pg_migrations(pg, where)
    if found != version:
        raise ConfigError(
            f"--to: {where} has schema version {found}, the SQLite database {version}: "
            "both must be at this release's schema (`smsbridge migrate`)"
        )


def _pg_columns(pg: Any) -> dict[str, dict[str, str]]:
    """table -> column -> data type, for the tables of the connection's current schema."""
    found: dict[str, dict[str, str]] = {}
    for table, column, kind in pg.execute(
        "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_schema, table_name) "
        "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' "
        "ORDER BY c.table_name, c.ordinal_position"
    ):
        found.setdefault(table, {})[column] = kind
    return found


def _expect_empty(pg: Any, tables: list[str], where: str) -> None:
    for name in tables:
        if pg.execute(f'SELECT EXISTS (SELECT 1 FROM "{name}")').fetchone()[0]:
            raise ConfigError(
                f"--to: {where} is not empty (table {name} has rows): migrate-store writes "
                "only into an empty database"
            )


def _copy_table(
    lite: sqlite3.Connection, pg: Any, table: str, target: dict[str, str] | None, where: str
) -> int:
    names = [row[1] for row in lite.execute(f'PRAGMA table_info("{table}")')]
    missing = [n for n in names if target is None or n not in target]
    if target is None or missing:
        what = f"table {table}" if target is None else f"columns {', '.join(missing)} of {table}"
        raise ConfigError(
            f"--to: {where} has no {what}: its schema does not match the SQLite database's "
            "(a PostgreSQL twin missing from smsbridge/postgres/schema.py?)"
        )
    import psycopg

    adapt = [_adapter(target[n]) for n in names]
    quoted = ", ".join(f'"{n}"' for n in names)
    count = 0
    try:
        with pg.cursor().copy(f'COPY "{table}" ({quoted}) FROM STDIN') as copy:
            for row in lite.execute(f'SELECT {quoted} FROM "{table}" ORDER BY rowid'):
                copy.write_row([fix(value) for fix, value in zip(adapt, row, strict=True)])
                count += 1
    except psycopg.Error as exc:  # a value PostgreSQL refuses: the whole copy is rolled back
        raise ConfigError(
            f"--to: {where} refused a row of table {table} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else exc!r}): nothing was copied"
        ) from None
    return count


def _adapter(pg_type: str) -> Callable[[Any], Any]:
    if pg_type in _INTEGERS:
        return _integer
    return _same


def _same(value: Any) -> Any:
    return value


def _integer(value: Any) -> Any:
    """SQLite keeps what it is given: an integral REAL in an INTEGER column goes over as the
    integer it is (anything else is left for PostgreSQL to refuse, rolling the copy back)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _advance_sequences(lite: sqlite3.Connection, pg: Any) -> None:
    """Each identity column's next value: one past the highest id its table holds or (for
    AUTOINCREMENT tables) ever handed out."""
    handed_out = dict(_sqlite_sequences(lite))
    for table, column in pg.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() "
        "AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')"
    ).fetchall():
        top = pg.execute(f'SELECT max("{column}") FROM "{table}"').fetchone()[0] or 0
        top = max(int(top), handed_out.get(table, 0))
        called = "true" if top > 0 else "false"  # (the connection sends a bool as 0 or 1)
        pg.execute(
            f"SELECT setval(pg_get_serial_sequence(%s, %s), %s, {called})",
            (f'"{table}"', column, max(top, 1)),
        )


def _sqlite_sequences(lite: sqlite3.Connection) -> Iterator[tuple[str, int]]:
    exists = lite.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
    ).fetchone()
    if exists:
        for name, seq in lite.execute("SELECT name, seq FROM sqlite_sequence"):
            yield str(name), int(seq or 0)
