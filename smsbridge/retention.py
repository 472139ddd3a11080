"""Retention: finished SMS older than SMSBRIDGE_RETENTION_DAYS are deleted, a small batch per
transaction, so that health data and phone numbers are not kept for ever; how many rows went,
per kind, is kept in `retention_totals` (this module owns that table) and exported as
`smsbridge_pruned_total{kind}` (web/metrics.py).

What may go (each table's owner decides, docs/architecture.md rule 11):

    messages          inbound SMS submitted, relayed or rejected, accepted before the cut-off,
                      without a task (inbound/messages.py), with
    inbound_parts     the parts they were joined from
    outgoing          outgoing SMS delivered or failed, last changed before the cut-off, without
                      a send task and with every status report heard by CHT
                      (outbound/messages.py), with
    outgoing_reports  their status reports (outbound/reports.py) and
    delivery_reports  their delivery reports; and reports that never matched any SMS, received
                      before the cut-off (outbound/delivery.py)
    outgoing_parts    the parts of those sent in split mode (outbound/parts.py)

Nothing unfinished goes: received, queued, held, sending, sent, dead, anything with a task.

The service runs `Retention.step` in its worker pool (service.py): once every RUN_EVERY seconds
of its clock it prunes in batches of BATCH rows, each batch one write job (the writer is free
for webhooks between batches). `smsbridge prune` runs the same `prune` by hand.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Mapping

from smsbridge.inbound import messages as inbound
from smsbridge.logs import event
from smsbridge.outbound import delivery, parts, reports
from smsbridge.outbound import messages as outgoing
from smsbridge.store import Store

log = logging.getLogger(__name__)

KINDS = (
    "messages",
    "inbound_parts",
    "outgoing",
    "outgoing_reports",
    "delivery_reports",
    "outgoing_parts",
)
"""What is pruned: the `kind` label of smsbridge_pruned_total."""

BATCH = 500
"""Rows (of the main table) deleted per transaction."""

RUN_EVERY = 3600.0
"""Seconds (of the service's clock) between two runs of the background job."""

DAY = 86400.0

Batch = Callable[[sqlite3.Connection], tuple[dict[str, int], int]]
"""One batch's write job: (rows deleted by kind, rows of its main table)."""


def _zero() -> dict[str, int]:
    return dict.fromkeys(KINDS, 0)


def cut_off(now: float, days: float) -> float:
    """The moment before which finished rows go: `days` before `now` (epoch seconds)."""
    return now - days * DAY


def add_totals_in(conn: sqlite3.Connection, pruned: Mapping[str, int], now: float) -> None:
    """Inside a write job: add `pruned` (kind -> rows) to the totals kept after the rows."""
    conn.executemany(
        "INSERT INTO retention_totals(kind, pruned, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT(kind) DO UPDATE SET pruned = retention_totals.pruned + excluded.pruned, "
        "updated_at = excluded.updated_at",
        [(kind, count, now) for kind, count in pruned.items() if count],
    )


def totals(store: Store) -> dict[str, int]:
    """Rows pruned so far, by kind (every kind, 0 when none), for /metrics."""
    found = _zero()
    try:
        rows = store.query("SELECT kind, pruned FROM retention_totals")
    except sqlite3.OperationalError:  # not migrated yet
        rows = []
    for kind, count in rows:
        found[str(kind)] = int(count)
    return found


def _inbound_batch(before: float, limit: int, now: float) -> Batch:
    def job(conn: sqlite3.Connection) -> tuple[dict[str, int], int]:
        gone = inbound.prune_in(conn, before, limit)
        add_totals_in(conn, gone, now)
        return gone, gone["messages"]

    return job


def _outgoing_batch(before: float, limit: int, now: float) -> Batch:
    def job(conn: sqlite3.Connection) -> tuple[dict[str, int], int]:
        rows = outgoing.prune_in(conn, before, limit)
        gone = {
            "outgoing": len(rows),
            "outgoing_reports": reports.forget_in(conn, [ref for _id, ref in rows]),
            "delivery_reports": delivery.forget_in(conn, [row_id for row_id, _ref in rows]),
            "outgoing_parts": parts.forget_in(conn, [row_id for row_id, _ref in rows]),
        }
        add_totals_in(conn, gone, now)
        return gone, len(rows)

    return job


def _unmatched_batch(before: float, limit: int, now: float) -> Batch:
    def job(conn: sqlite3.Connection) -> tuple[dict[str, int], int]:
        gone = {"delivery_reports": delivery.prune_in(conn, before, limit)}
        add_totals_in(conn, gone, now)
        return gone, gone["delivery_reports"]

    return job


async def prune(store: Store, before: float, now: float, *, batch: int = BATCH) -> dict[str, int]:
    """Delete every finished row older than `before`, `batch` rows of a table per transaction,
    letting other work in between. Returns the rows deleted, by kind (every kind)."""
    pruned = _zero()
    for make in (_inbound_batch, _outgoing_batch, _unmatched_batch):
        while True:
            gone, main = await store.write(make(before, batch, now))
            for kind, count in gone.items():
                pruned[kind] += count
            if main < batch:
                break
            await asyncio.sleep(0)  # whatever waits for the event loop goes first
    return pruned


def prunable(store: Store, before: float) -> dict[str, int]:
    """What `prune` would delete now, by kind (`smsbridge prune --dry-run`); reads only."""

    def count(conn: sqlite3.Connection) -> dict[str, int]:
        found = _zero()
        found.update(inbound.prunable_in(conn, before))
        found["outgoing"] = outgoing.prunable_in(conn, before)
        refs_sql, params = outgoing.prunable_select(before, "ref")
        found["outgoing_reports"] = reports.count_for_in(conn, refs_sql, params)
        ids_sql, params = outgoing.prunable_select(before, "id")
        found["delivery_reports"] = delivery.prunable_in(conn, before, ids_sql, params)
        found["outgoing_parts"] = parts.count_for_in(conn, ids_sql, params)
        return found

    return store.read(count)


class Retention:
    """The background job: `step(now)` prunes rows older than `days` once every `every`
    seconds of the clock (the first run at the first step). `days` 0 keeps everything."""

    def __init__(
        self, store: Store, days: float, *, every: float = RUN_EVERY, batch: int = BATCH
    ) -> None:
        self.store = store
        self.days = days
        self.every = every
        self.batch = batch
        self.next_run = 0.0

    async def step(self, now: float) -> dict[str, int] | None:
        """The worker pool's step: prune when due; returns what went (None: not due)."""
        if self.days <= 0 or now < self.next_run:
            return None
        self.next_run = now + self.every
        pruned = await prune(self.store, cut_off(now, self.days), now, batch=self.batch)
        if any(pruned.values()):
            counts = " ".join(f"{kind}:{count}" for kind, count in pruned.items() if count)
            event(log, "pruned", days=self.days, rows=counts)
        return pruned
