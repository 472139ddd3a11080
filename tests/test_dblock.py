"""One `smsbridge serve` per SQLite database (smsbridge/dblock.py): a second one on the same file
exits 2 naming the database, while the CLI's reads and backups go on working; the lock goes
with the process, `kill -9` included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smsbridge.dblock import hold_database, lock_path
from smsbridge.errors import ConfigError
from tests.test_crash import Bridge

NO_CHT = "http://127.0.0.1:9"  # nothing listens there: serve starts all the same


def smsbridge(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smsbridge", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def on_database_of(other: Bridge, directory: Path) -> Bridge:
    """A bridge (not started) with a port and log of its own, on `other`'s database."""
    directory.mkdir()
    bridge = Bridge(directory, NO_CHT)
    bridge.env["SMSBRIDGE_DATABASE"] = other.env["SMSBRIDGE_DATABASE"]
    return bridge


@pytest.fixture
def first(tmp_path: Path) -> Iterator[Bridge]:
    bridge = Bridge(tmp_path, NO_CHT)
    bridge.start()
    yield bridge
    bridge.stop()


def test_a_second_serve_on_the_same_database_refuses_to_start(
    first: Bridge, tmp_path: Path
) -> None:
    second = on_database_of(first, tmp_path / "second")
    try:
        done = smsbridge(
            second.env, "serve", "--host", "127.0.0.1", "--port", str(second.port), timeout=20
        )
    finally:
        second.log.close()
    assert done.returncode == 2, done.stderr
    assert first.env["SMSBRIDGE_DATABASE"] in done.stderr
    assert "another smsbridge" in done.stderr
    assert first.proc is not None
    assert f"process {first.proc.pid}" in done.stderr
    assert "cannot share one SQLite database" in done.stderr
    assert first.proc.poll() is None  # the first one runs on


def test_the_cli_reads_and_backs_up_the_database_while_serve_runs(
    first: Bridge, tmp_path: Path
) -> None:
    listed = smsbridge(first.env, "outbox", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)
    inbox = smsbridge(first.env, "inbox", "ls")
    assert inbox.returncode == 0, inbox.stderr
    copy = tmp_path / "copy.db"
    backed = smsbridge(first.env, "backup", str(copy))
    assert backed.returncode == 0, backed.stderr
    assert copy.stat().st_size > 0


def test_the_lock_goes_with_a_killed_serve(first: Bridge, tmp_path: Path) -> None:
    first.kill()
    again = on_database_of(first, tmp_path / "again")
    try:
        again.start()  # waits for /healthz; fails if it exited
        assert again.proc is not None and again.proc.poll() is None
    finally:
        again.stop()


def test_hold_database_in_process(tmp_path: Path) -> None:
    database = tmp_path / "bridge.db"
    link = tmp_path / "link.db"
    database.touch()
    link.symlink_to(database)
    assert lock_path(link) == lock_path(database)
    with hold_database(database) as held:
        assert held == lock_path(database)
        assert held.read_text().strip() == str(os.getpid())
        assert oct(held.stat().st_mode & 0o777) == oct(0o600)
        # flock locks belong to the open file: a second open, even in this process, is refused
        with pytest.raises(ConfigError, match="in use by another smsbridge"), hold_database(link):
            pass
    with hold_database(database):  # released at the end of the block
        pass
