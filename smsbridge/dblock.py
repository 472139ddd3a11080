"""One `smsbridge serve` per SQLite database: `serve` holds an exclusive lock on
`<database>.lock`, beside the database, for as long as it runs.

    with hold_database(path):   # ConfigError when another smsbridge holds it
        ...

The lock is `flock(LOCK_EX | LOCK_NB)` on a file of its own, not on the database: SQLite's
own locks (and so the CLI's listings, `outbox` actions, `backup` and `migrate`, which open the
database while `serve` runs) are untouched. The kernel drops the lock when the process ends,
however it ends (`kill -9` included), so a stale lock file never keeps a bridge from starting.
The holder writes its process id into the file, for the message the next one prints.
Several bridges cannot share one SQLite file; they can share a PostgreSQL database
(SMSBRIDGE_DATABASE=postgresql://...), which this lock leaves alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from smsbridge.errors import ConfigError
from smsbridge.store import is_postgres_url


def lock_path(database: Path) -> Path:
    """The lock file of `database` (symlinks resolved: two paths to one file share a lock)."""
    real = database.resolve()
    return real.with_name(real.name + ".lock")


@contextlib.contextmanager
def hold_database(database: Path | str) -> Iterator[Path | None]:
    """Hold `database`'s lock until the block ends; yields the lock file (None for SQLite's
    in-memory database, which no other process can open, and for a PostgreSQL URL: any number
    of bridges share one PostgreSQL database, smsbridge/postgres/store.py)."""
    if is_postgres_url(database) or str(database) == ":memory:":
        yield None
        return
    path = lock_path(Path(database))
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"SMSBRIDGE_DATABASE: cannot create the lock file {str(path)!r}: {exc.strerror or exc}"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            who = f" (process {holder})" if holder.isdigit() else ""
            raise ConfigError(
                f"SMSBRIDGE_DATABASE: {str(database)!r} is in use by another smsbridge{who}: "
                "one `smsbridge serve` per SQLite database (stop the other one, or give this "
                "one its own SMSBRIDGE_DATABASE; several bridges cannot share one SQLite "
                "database)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race a new holder)
