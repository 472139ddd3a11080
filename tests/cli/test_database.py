"""The database from the operator's side: `smsbridge backup` under load and its restore,
`smsbridge migrate`, read-only commands that never migrate, files created 0600, `--version`."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlite_utils

from smsbridge import __version__
from smsbridge.cli.main import main
from smsbridge.migrations import MIGRATIONS, schema_version
from smsbridge.store import Store
from tests.conftest import running_bridge


def _cli(*args: str, database: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSBRIDGE_")}
    env["SMSBRIDGE_DATABASE"] = str(database)
    return subprocess.run(
        [sys.executable, "-m", "smsbridge", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_backup_taken_under_load_holds_every_acknowledged_message(tmp_path: Path) -> None:
    copy = tmp_path / "backup" / "copy.db"
    copy.parent.mkdir()
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    with running_bridge(tmp_path) as bridge:
        path = bridge.inbound_path("generic")

        def post_webhooks(worker: int) -> None:
            import httpx

            with httpx.Client(base_url=bridge.url, timeout=10) as http:
                n = 0
                while not stop.is_set() and n < 2000:
                    sms_id = f"w{worker}-{n}"
                    reply = http.post(
                        path, data={"from": "+254712345678", "text": "P 12 Jane", "id": sms_id}
                    )
                    if reply.status_code == 200:
                        with lock:
                            acknowledged.append(sms_id)
                    n += 1

        threads = [threading.Thread(target=post_webhooks, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        try:
            while len(acknowledged) < 200:  # the service is busy before the backup starts
                threading.Event().wait(0.01)
            with lock:
                before = set(acknowledged)
            done = _cli("backup", str(copy), database=bridge.settings.database)
            with lock:
                during = len(acknowledged) - len(before)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    assert done.returncode == 0, done.stderr
    assert during > 0  # webhooks were still being stored while the copy was made
    # restore: the copy alone (no -wal, no -shm beside it) in a fresh place
    restored = tmp_path / "restored" / "bridge.db"
    restored.parent.mkdir()
    shutil.copy(copy, restored)
    assert sorted(p.name for p in copy.parent.iterdir()) == ["copy.db"]
    with Store(restored, migrate=False) as store:
        stored = {r[0] for r in store.query("SELECT external_id FROM messages")}
        tasks = store.query("SELECT COUNT(*) FROM tasks WHERE kind = 'submit'")[0][0]
    assert before <= stored  # every SMS acknowledged before the backup began is in it
    assert tasks == len(stored)  # each with its submit task: the copy is one transaction
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600


def test_backup_refuses_to_overwrite_a_file_without_force(tmp_path: Path) -> None:
    database = tmp_path / "bridge.db"
    Store(database).close()
    target = tmp_path / "taken.db"
    target.write_text("keep me")
    refused = _cli("backup", str(target), database=database)
    assert refused.returncode == 2
    assert "usage error" in refused.stderr and "--force" in refused.stderr
    assert target.read_text() == "keep me"
    assert _cli("backup", "--force", str(target), database=database).returncode == 0
    assert schema_version(target) == len(MIGRATIONS)


def test_backup_without_a_database_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    done = _cli("backup", str(tmp_path / "copy.db"), database=tmp_path / "missing.db")
    assert done.returncode == 2
    assert "no database" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _old_database(path: Path, version: int) -> None:
    """A database as an older release left it: only its first `version` migrations."""
    conn = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(conn)
    for migration in MIGRATIONS[:version]:
        migration(db)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


def test_read_only_commands_never_migrate_and_say_how_to(
    cli_database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _old_database(cli_database, len(MIGRATIONS) - 1)
    assert main(["inbox", "ls"]) == 2
    err = capsys.readouterr().err
    assert "smsbridge migrate" in err and f"needs {len(MIGRATIONS)}" in err
    assert schema_version(cli_database) == len(MIGRATIONS) - 1  # left as it was
    assert main(["migrate"]) == 0
    assert f"-> {len(MIGRATIONS)}" in capsys.readouterr().out
    assert schema_version(cli_database) == len(MIGRATIONS)
    assert main(["inbox", "ls", "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
    assert main(["migrate"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_a_database_from_a_newer_release_is_refused(
    cli_database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Store(cli_database).close()
    conn = sqlite3.connect(cli_database)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    assert main(["outbox", "ls"]) == 2
    assert "newer" in capsys.readouterr().err


def test_the_database_and_its_wal_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    with Store(tmp_path / "bridge.db") as store:
        store.write_sync(lambda c: c.execute("INSERT INTO kv VALUES ('k', 'v', 0)"))
        for name in ("bridge.db", "bridge.db-wal", "bridge.db-shm"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"smsbridge {__version__}"
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert f'version = "{__version__}"' in pyproject


def test_usage_errors_are_called_usage_errors(
    cli_database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["outbox", "retry", "abc"]) == 2
    err = capsys.readouterr().err
    assert "usage error" in err and "configuration problem" not in err


def test_a_file_that_is_not_a_database_is_a_problem_not_a_traceback(
    cli_database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_database.write_text("not a database at all, but long enough to be read as one" * 40)
    for command in (["inbox", "ls"], ["migrate"], ["check-config"]):
        assert main(command) == 2, command
        err_or_out = "".join(capsys.readouterr())
        assert "is not an SQLite database" in err_or_out, command
        assert "Traceback" not in err_or_out


def test_backup_into_a_directory_is_refused_and_leaves_no_copy(tmp_path: Path) -> None:
    database = tmp_path / "bridge.db"
    Store(database).close()
    target = tmp_path / "backups"
    target.mkdir()
    refused = _cli("backup", "--force", str(target), database=database)
    assert refused.returncode == 2
    assert "is a directory" in refused.stderr and "Traceback" not in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backups", "bridge.db"]


def test_migrate_refuses_a_database_of_a_newer_release(
    cli_database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Store(cli_database).close()
    conn = sqlite3.connect(cli_database)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    assert main(["migrate"]) == 2
    assert "newer" in capsys.readouterr().err
    assert schema_version(cli_database) == len(MIGRATIONS) + 1
