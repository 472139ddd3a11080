"""`smsbridge prune [--older-than DAYS] [--dry-run]`: retention by hand (smsbridge/retention.py
does it in the background): deletes the finished SMS older than DAYS (default
SMSBRIDGE_RETENTION_DAYS), in small batches, and prints how many rows went, by kind. With
`--dry-run` it only counts. It never migrates: a database of another schema version is a
configuration problem (`smsbridge migrate` first)."""

from __future__ import annotations

import asyncio
import time
from typing import TextIO

from smsbridge import retention
from smsbridge.errors import UsageError


def prune_command(older_than: float | None, dry_run: bool, out: TextIO) -> int:
    from smsbridge.cli.listings import open_store
    from smsbridge.settings import Settings

    settings = Settings.from_env()
    window = older_than if older_than is not None else float(settings.retention_days)
    if window <= 0:
        raise UsageError(
            "SMSBRIDGE_RETENTION_DAYS is 0 (keep forever): give --older-than DAYS to prune"
        )
    now = time.time()
    before = retention.cut_off(now, window)
    with open_store(settings.database) as store:
        if dry_run:
            counts = retention.prunable(store, before)
        else:
            counts = asyncio.run(retention.prune(store, before, now))
    verb = "would delete" if dry_run else "deleted"
    print(f"finished SMS older than {window:g} days: {verb}", file=out)
    for kind in retention.KINDS:
        print(f"  {kind:<18} {counts[kind]}", file=out)
    return 0
