"""The store: migrations, WAL + synchronous=FULL, group commit, failing jobs isolated. Every
test here runs on SQLite and on PostgreSQL (tests/conftest.py POSTGRES_MODULES) unless it says
it concerns one engine only; tests/test_pgstore.py has what only PostgreSQL does."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import pytest

from smsbridge.migrations import MIGRATIONS
from smsbridge.store import Job, Store, open_store
from tests.conftest import only_on


def test_new_database_is_migrated_to_the_latest_version(database: Path | str) -> None:
    with open_store(database) as store:
        assert store.version == len(MIGRATIONS)
        for table in ("messages", "tasks", "kv"):  # each is there, empty
            assert store.query(f"SELECT COUNT(*) FROM {table}")[0][0] == 0


def test_reopening_does_not_rerun_migrations(database: Path | str) -> None:
    with open_store(database) as store:
        store.write_sync(lambda c: c.execute("INSERT INTO kv VALUES ('k', 'v', 1)"))
    with open_store(database) as store:
        assert store.get_kv("k") == "v"


def test_journal_is_wal_and_sync_is_full(tmp_path: Path, backend: str) -> None:
    only_on(backend, "sqlite", "SQLite's journal and sync modes")
    with Store(tmp_path / "a.db") as store:
        assert store.write_sync(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
        assert store.write_sync(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 2


def test_concurrent_writes_share_commits(database: Path | str) -> None:
    with open_store(database) as store:

        async def many() -> None:
            def insert(n: int):  # type: ignore[no-untyped-def]
                return lambda c: c.execute("INSERT INTO kv VALUES (?, 'v', 0)", (f"k{n}",)).rowcount

            results = await asyncio.gather(*(store.write(insert(n)) for n in range(500)))
            assert results == [1] * 500

        before = store.batches
        asyncio.run(many())
        assert store.query("SELECT COUNT(*) FROM kv")[0][0] == 500
        assert store.batches - before < 500  # grouped: fewer commits than writes


def test_a_failing_job_does_not_spoil_its_batch(database: Path | str) -> None:
    with open_store(database) as store:

        async def mixed() -> list[object]:
            def ok(c: sqlite3.Connection) -> int:
                return c.execute("INSERT INTO kv VALUES ('good', 'v', 0)").rowcount

            def bad(c: sqlite3.Connection) -> int:
                c.execute("INSERT INTO kv VALUES ('bad', 'v', 0)")
                raise ValueError("boom")

            return await asyncio.gather(store.write(ok), store.write(bad), return_exceptions=True)

        first, second = asyncio.run(mixed())
        assert first == 1
        assert isinstance(second, ValueError)
        assert [r[0] for r in store.query("SELECT key FROM kv")] == ["good"]


def _one_batch(store: Store, jobs: list[tuple[Job[object], bool]]) -> list[object]:
    """Run `jobs` ((job, rerunnable) pairs) as ONE batch of the writer, in order: the writer
    is held by a job waiting on an event while they are queued."""
    held, gate = threading.Event(), threading.Event()

    def hold(c: sqlite3.Connection) -> None:
        held.set()
        gate.wait(10)

    store.submit(hold)
    assert held.wait(10)  # the writer runs `hold`: what comes next waits in its queue

    async def run() -> list[object]:
        tasks = [asyncio.ensure_future(store.write(job, rerunnable=r)) for job, r in jobs]
        await asyncio.sleep(0)  # every job queued behind the held writer
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    return asyncio.run(run())


def _insert(key: str, runs: Counter[str], fail: bool = False) -> Job[object]:
    def job(c: sqlite3.Connection) -> int:
        runs[key] += 1
        inserted = c.execute("INSERT INTO kv VALUES (?, 'v', 0)", (key,)).rowcount
        if fail:
            raise ValueError("boom")
        return inserted

    return job


def test_rerunnable_jobs_run_once_when_none_fails(database: Path | str) -> None:
    with open_store(database) as store:
        runs: Counter[str] = Counter()
        before = store.batches
        results = _one_batch(store, [(_insert(k, runs), True) for k in "abc"])
        assert results == [1, 1, 1]
        assert runs == {"a": 1, "b": 1, "c": 1}
        assert store.batches - before == 2  # the held job's commit, then one for the three
        assert {r[0] for r in store.query("SELECT key FROM kv")} == {"a", "b", "c"}


def test_a_failing_rerunnable_job_does_not_spoil_its_batch(database: Path | str) -> None:
    """Without savepoints, a failure rolls the whole batch back and its rerunnable jobs run
    again, each in a savepoint; a job not declared rerunnable still runs once."""
    with open_store(database) as store:
        runs: Counter[str] = Counter()
        jobs: list[tuple[Job[object], bool]] = [
            (_insert("a", runs), True),
            (_insert("bad", runs, fail=True), True),
            (_insert("b", runs), True),
            (_insert("once", runs), False),
            (_insert("c", runs), True),
        ]
        first, second, *rest = _one_batch(store, jobs)
        assert first == 1 and rest == [1, 1, 1]
        assert isinstance(second, ValueError)
        assert runs == {"a": 2, "bad": 2, "b": 1, "once": 1, "c": 1}
        keys = {r[0] for r in store.query("SELECT key FROM kv")}
        assert keys == {"a", "b", "once", "c"}


def test_readers_see_committed_writes_from_another_thread(database: Path | str) -> None:
    with open_store(database) as store:
        store.write_sync(lambda c: Store.put_kv(c, "x", "1", 0))
        assert store.get_kv("x") == "1"
        store.write_sync(lambda c: Store.put_kv(c, "x", "2", 1))
        assert store.get_kv("x") == "2"


def test_closed_store_refuses_writes(database: Path | str) -> None:
    store = open_store(database)
    store.close()
    with pytest.raises(RuntimeError):
        store.write_sync(lambda c: None)


def test_task_ids_are_never_reused(database: Path | str) -> None:
    """A dead letter's id, once dropped, never names another task (an operator's ticket keeps
    pointing at the task it was written about)."""
    with open_store(database) as store:

        def add(c: sqlite3.Connection) -> int:
            cur = c.execute(
                "INSERT INTO tasks(kind, ref, state, not_before, created_at, updated_at) "
                "VALUES ('send', 'x', 'dead', 0, 0, 0) RETURNING id"
            )
            return int(cur.fetchone()[0])

        first = store.write_sync(add)
        store.write_sync(lambda c: c.execute("DELETE FROM tasks WHERE id = ?", (first,)))
        assert store.write_sync(add) > first


def test_the_task_id_migration_keeps_every_task(tmp_path: Path, backend: str) -> None:
    import sqlite_utils

    only_on(backend, "sqlite", "a migration of SQLite's tables")
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    db = sqlite_utils.Database(conn)
    for migration in MIGRATIONS[:4]:
        migration(db)
    conn.execute("PRAGMA user_version = 4")
    conn.execute(
        "INSERT INTO tasks(id, kind, ref, state, attempts, not_before, memo, created_at, "
        "updated_at) VALUES (7, 'send', 'r7', 'dead', 3, 5, 'slot', 1, 2)"
    )
    conn.close()
    with Store(tmp_path / "old.db") as store:
        (row,) = store.query("SELECT id, ref, state, attempts, memo FROM tasks")
        assert tuple(row) == (7, "r7", "dead", 3, "slot")
        plan = store.query(
            "EXPLAIN QUERY PLAN SELECT * FROM tasks INDEXED BY tasks_arrival "
            "WHERE state = 'ready' AND kind = 'send' ORDER BY id LIMIT 1"
        )
        assert plan  # the claim indexes are back


def test_without_psycopg_sqlite_works_and_a_url_says_what_to_install(
    tmp_path: Path, backend: str
) -> None:
    """`pip install smsbridge` alone (no `postgres` extra) runs on SQLite."""
    import subprocess
    import sys

    only_on(backend, "sqlite", "a process without psycopg")
    script = f"""
import sys
sys.modules["psycopg"] = None  # not installed
import smsbridge.service, smsbridge.web.app, smsbridge.cli.main
from smsbridge.errors import ConfigError
from smsbridge.store import open_store
with open_store({str(tmp_path / "a.db")!r}) as store:
    assert store.version > 0
try:
    open_store("postgresql://db.example.org/sms")
except ConfigError as exc:
    assert "smsbridge[postgres]" in str(exc), exc
else:
    raise AssertionError("a URL opened without psycopg")
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
