"""tests/postgres.py: the run's PostgreSQL server, and a fresh database per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import postgres
from tests.postgres import PgServer


@pytest.mark.parametrize("round_", [1, 2])
def test_each_test_gets_an_empty_database_of_its_own(pg_database: str, round_: int) -> None:
    import psycopg

    with psycopg.connect(pg_database) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE t (id BIGSERIAL PRIMARY KEY, round INT)")
        conn.execute("INSERT INTO t (round) VALUES (%s)", (round_,))
        listening = conn.execute("SELECT current_setting('listen_addresses')").fetchone()
        assert listening == ("127.0.0.1",)


def test_a_server_runs_as_another_user_than_root_and_leaves_nothing(pg_server: PgServer) -> None:
    with PgServer() as other:
        assert other.process is not None and other.root is not None
        root, process = other.root, other.process
        status = Path(f"/proc/{process.pid}/status").read_text()
        uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
        assert uid != "0"
    assert process.poll() is not None
    assert not root.exists()


def test_a_new_server_removes_what_a_killed_run_left(pg_server: PgServer) -> None:
    """A run killed before `stop()` leaves its directory (the server died with the run); the
    next server deletes it, and nothing else."""
    import subprocess
    import sys
    import tempfile

    code = "import os; print(os.getpid())"
    dead = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    left = Path(tempfile.mkdtemp(prefix=postgres.PREFIX))
    (left / postgres.OWNER).write_text(dead.stdout)
    foreign = Path(tempfile.mkdtemp(prefix=postgres.PREFIX))  # no owner file: not touched
    try:
        with PgServer():
            assert not left.exists()
            assert foreign.exists()
    finally:
        foreign.rmdir()
