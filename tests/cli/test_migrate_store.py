"""`smsbridge migrate-store`: an SQLite database copied into PostgreSQL (the run's server,
tests/postgres.py), row for row, with sequences that continue; and every refusal (exit 2)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from smsbridge import tasks
from smsbridge.cli.main import main
from smsbridge.dblock import hold_database
from smsbridge.inbound.messages import SUBMIT
from smsbridge.migrations import MIGRATIONS
from smsbridge.outbound import messages as outgoing
from smsbridge.store import Store, open_store
from tests import postgres
from tests.conftest import running_bridge

WEBHOOKS = 25
OUTGOING = 7
SCRATCH = 5  # tasks enqueued then finished: the AUTOINCREMENT counter runs past the highest id


def _source(tmp_path: Path) -> Path:
    """An SQLite database written by the bridge: webhooks through its HTTP route, outgoing SMS
    and finished tasks through their owner modules."""
    path = tmp_path / "source.db"
    with running_bridge(tmp_path, SMSBRIDGE_DATABASE=str(path)) as bridge:
        route = bridge.inbound_path("generic")
        for n in range(WEBHOOKS):
            form = {"from": "+254712345678", "text": f"P {n + 1} Jane{n}", "id": f"m-{n}"}
            assert bridge.http.post(route, data=form).status_code == 200
    now = time.time()
    with Store(path) as store:
        for n in range(OUTGOING):
            store.write_sync(lambda c, n=n: outgoing.insert_in(c, f"ref-{n}", "+254700", "hi", now))
        for n in range(SCRATCH):
            store.write_sync(lambda c, n=n: tasks.enqueue_in(c, "scratch", f"s{n}", now))
        for _ in range(SCRATCH):
            task = store.write_sync(lambda c: tasks.claim_in(c, ["scratch"], now, 30.0))
            assert task is not None
            assert store.write_sync(lambda c, task=task: tasks.done_in(c, task))
    return path


def _rows(conn: Any, table: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY 1')]


def _counts(out: str) -> dict[str, int]:
    """The rows per table `migrate-store` printed (`  name  count` lines)."""
    lines = [line.split() for line in out.splitlines() if line.startswith("  ")]
    return {words[0]: int(words[1]) for words in lines if len(words) == 2}


def _migrate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["migrate-store", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_copy_holds_every_row_and_the_ids_continue_after_the_highest_ever(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import psycopg

    source = _source(tmp_path)
    code, out, err = _migrate(capsys, "--to", pg_database, "--from", str(source))
    assert code == 0, err

    with sqlite3.connect(source) as lite, psycopg.connect(pg_database) as pg:
        tables = [
            name
            for (name,) in lite.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
            )
        ]
        assert {"messages", "tasks", "outgoing", "outgoing_reports", "kv"} <= set(tables)
        printed = _counts(out)
        for table in tables:
            rows = _rows(lite, table)
            assert _rows(pg, table) == rows, table
            assert printed[table] == len(rows), table
        assert printed["messages"] == WEBHOOKS and printed["outgoing"] == OUTGOING
        (handed_out,) = lite.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'tasks'"
        ).fetchone()
        (highest_task,) = lite.execute("SELECT max(id) FROM tasks").fetchone()
        (highest_message,) = lite.execute("SELECT max(id) FROM messages").fetchone()
    assert handed_out == highest_task + SCRATCH  # the finished tasks' ids were handed out

    now = time.time()
    with open_store(pg_database, migrate=False) as store:  # this release's schema, as copied
        # a task claimed after the migration: the oldest submit, then finished
        task = store.write_sync(lambda c: tasks.claim_in(c, [SUBMIT], now, 30.0))
        assert task is not None and task.kind == SUBMIT
        first_submit = min(r[0] for r in store.query("SELECT id FROM tasks WHERE kind = 'submit'"))
        assert task.id == first_submit
        assert store.write_sync(lambda c: tasks.done_in(c, task))
        # new rows take the next ids: past every id SQLite handed out, never one reused
        new_task = store.write_sync(lambda c: tasks.enqueue_in(c, "scratch", "after", now))
        assert new_task == handed_out + 1
        store.write_sync(lambda c: outgoing.insert_in(c, "ref-after", "+254700", "hi", now))
        (new_message,) = store.query("SELECT id FROM outgoing WHERE ref = 'ref-after'")[0]
        assert new_message == OUTGOING + 1
        inserted = store.write_sync(
            lambda c: c.execute(
                "INSERT INTO messages (uuid, carrier, sender, text, received_at, accepted_at, "
                "state) VALUES ('u-after', 'generic', '+254712345678', 'x', 1, 1, 'received') "
                "RETURNING id"
            ).fetchone()[0]
        )
        assert inserted == highest_message + 1


def test_it_refuses_a_target_that_is_not_empty(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import psycopg

    source = _source(tmp_path)
    assert _migrate(capsys, "--to", pg_database, "--from", str(source))[0] == 0
    code, _, err = _migrate(capsys, "--to", pg_database, "--from", str(source))
    assert code == 2
    assert "is not empty (table" in err
    with psycopg.connect(pg_database) as pg:
        assert pg.execute("SELECT count(*) FROM messages").fetchone() == (WEBHOOKS,)

    other = postgres.shared_server().create_database()
    with psycopg.connect(other) as pg:
        pg.execute("CREATE TABLE mine (id INT)")
    code, _, err = _migrate(capsys, "--to", other, "--from", str(source))
    assert code == 2
    assert "is not empty (tables mine)" in err


def test_it_refuses_a_target_of_another_schema_version(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import psycopg

    from smsbridge.postgres import schema as pgschema

    source = _source(tmp_path)
    with psycopg.connect(pg_database, autocommit=True) as pg:
        pg.execute(f"CREATE TABLE {pgschema.VERSION_TABLE} (version INTEGER)")
        pg.execute(f"INSERT INTO {pgschema.VERSION_TABLE} VALUES (%s)", (len(MIGRATIONS) - 1,))
    code, _, err = _migrate(capsys, "--to", pg_database, "--from", str(source))
    assert code == 2
    assert f"has schema version {len(MIGRATIONS) - 1}, the SQLite database" in err


def test_it_refuses_a_source_that_is_not_a_current_smsbridge_database(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import psycopg

    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, " * 100)
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) - 1}")
    for path, why in (
        (text, "is not an SQLite database"),
        (old, "run `smsbridge migrate` on it first"),
        (tmp_path / "missing.db", "no SQLite database at"),
    ):
        code, _, err = _migrate(capsys, "--to", pg_database, "--from", str(path))
        assert code == 2, path
        assert why in err
    code, _, err = _migrate(capsys, "--to", str(old), "--from", str(old))
    assert code == 2 and "--to takes a PostgreSQL URL" in err
    with psycopg.connect(pg_database) as pg:  # nothing was written
        assert pg.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone() == (0,)


def test_a_copy_that_fails_part_way_leaves_the_target_empty(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every table is copied in one transaction: a row PostgreSQL refuses (a NUL character,
    which SQLite keeps in text and PostgreSQL does not) in `outgoing` undoes the tables copied
    before it (`messages`, ...)."""
    import psycopg

    source = _source(tmp_path)
    with sqlite3.connect(source) as lite:
        lite.execute("UPDATE outgoing SET content = ? WHERE ref = 'ref-3'", ("nul\x00here",))
    code, _, err = _migrate(capsys, "--to", pg_database, "--from", str(source))
    assert code == 2
    assert "refused a row of table outgoing" in err and "nothing was copied" in err
    with psycopg.connect(pg_database) as pg:
        assert pg.execute("SELECT count(*) FROM messages").fetchone() == (0,)
        assert pg.execute("SELECT count(*) FROM tasks").fetchone() == (0,)


def test_it_refuses_a_source_a_bridge_is_running_on(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _source(tmp_path)
    with hold_database(source):  # what `smsbridge serve` holds for its whole life
        code, _, err = _migrate(capsys, "--to", pg_database, "--from", str(source))
    assert code == 2
    assert "stop `smsbridge serve` first" in err
    code, _, err = _migrate(capsys, "--to", pg_database, "--from", str(source))
    assert code == 0, err  # once it stopped


def test_the_source_defaults_to_smsbridge_database(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str], cli_database: Path
) -> None:
    source = _source(tmp_path)
    source.rename(cli_database)
    code, out, err = _migrate(capsys, "--to", pg_database)
    assert code == 0, err
    assert f"copied {cli_database}" in out
    assert _counts(out)["messages"] == WEBHOOKS
