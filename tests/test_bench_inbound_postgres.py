"""bench/inbound.py --database URL: the store phase on PostgreSQL with one bridge and with two
sharing one database, on the run's server (tests/postgres.py). Checks the plumbing (both runs
measured, every acknowledged webhook stored once, the databases
it made dropped), not anybody's speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.postgres import PgServer

BENCH = Path(__file__).resolve().parent.parent / "bench" / "inbound.py"


@pytest.mark.slow
def test_one_bridge_and_two_on_one_database(pg_server: PgServer) -> None:
    options = ["--seconds", "1", "--count", "300", "--connections", "4"]
    done = subprocess.run(
        [sys.executable, str(BENCH), "--database", pg_server.url, *options],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)["postgresql"]
    assert figures["server"] == "given URL"
    for run in ("one_bridge", "two_bridges"):
        phase = figures["runs"][run]
        assert phase["acknowledged"] > 0 and phase["errors"] == 0
        assert phase["stored"] == phase["acknowledged"]  # stored once, on the one database
        assert figures[f"{run}_msgs_per_second"] == phase["msgs_per_second"] > 0
        assert figures[f"{run}_p99_ms"] == phase["latency_ms"]["p99"] > 0
    import psycopg

    with psycopg.connect(pg_server.url) as admin:
        left = admin.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'smsbridge_bench_%'"
        ).fetchone()
    assert left == (0,)
