"""Empty, migrated PostgreSQL databases for the storage tests, fast.

Creating a database and migrating it costs about a second on a loaded machine; emptying one
costs about a millisecond. So the databases a test asked for (`take`) are emptied after it
(`recycle`: every table's rows deleted, identities restarted) and handed to the next test that
asks. A database a test left busy (a connection holding locks) or changed (a table, a trigger)
is dropped from the pool instead, never reused.
"""

from __future__ import annotations

from tests.postgres import shared_server

_free: list[str] = []
_taken: list[str] = []
_cleaning: dict[str, str] = {}  # url -> the statements that empty it
_keys: dict[str, str] = {}  # key -> url, for the test that took them


def take(key: str) -> str:
    """The URL of an empty database at the latest schema version, the test's until it ends;
    the same one again for the same `key` (the file an SQLite test would reopen)."""
    from smsbridge.store import open_store

    if key in _keys:
        return _keys[key]
    if _free:
        url = _free.pop()
    else:
        url = shared_server().create_database()
        open_store(url).close()  # migrated once, here
        _cleaning[url] = _cleaning_sql(url)
    _taken.append(url)
    _keys[key] = url
    return url


def recycle() -> None:
    """After a test: empty the databases it took and put them back in the pool. One still in
    use (a module-scoped bridge's) waits for a later call."""
    waiting = []
    _keys.clear()
    while _taken:
        url = _taken.pop()
        state = _emptied(url)
        if state == "busy":
            waiting.append(url)
        elif state == "empty":
            _free.append(url)
    _taken.extend(waiting)


def _shape(conn: object) -> tuple[tuple[str, ...], ...]:
    rows = conn.execute(  # type: ignore[attr-defined]
        "SELECT c.relname, c.relkind, (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' ORDER BY 1"
    ).fetchall()
    return tuple(tuple(str(v) for v in row) for row in rows)


_shapes: dict[str, tuple[tuple[str, ...], ...]] = {}


def _cleaning_sql(url: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        _shapes[url] = _shape(conn)
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_name <> 'smsbridge_schema'"
            )
        ]
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND column_name = 'id' AND is_identity = 'YES'"
            )
        ]
    return "; ".join(
        ["SET lock_timeout = '2s'"]
        + [f"DELETE FROM {table}" for table in tables]
        + [f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 1, false)" for table in ids]
    )


def _emptied(url: str) -> str:
    """ "empty" (emptied), "busy" (someone is connected: left as it is) or "spoilt" (its
    schema changed, or it could not be emptied: never reused)."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            (busy,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchone() or (0,)
            if busy:
                return "busy"
            if _shape(conn) != _shapes[url]:
                return "spoilt"
            with conn.transaction():
                conn.execute(_cleaning[url])
        return "empty"
    except psycopg.Error:
        return "spoilt"
