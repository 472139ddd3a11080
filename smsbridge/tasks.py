"""The durable task queue (table `tasks`): every side effect is a task.

A task is a row in `tasks`: `kind` says what to do, `ref` what to do it to. Workers `claim` the
lowest-id due task of their kinds (arrival order) with a lease that expires, so a crashed
worker's task is picked up again; then `done`, `retry` (exponential backoff with jitter,
capped; after `max_attempts` the task gives up), `release` (put back without counting an attempt)
or `give_up` (the dead-letter list, with the reason). Operators list dead letters and retry or
drop them by id (`smsbridge outbox ls/retry/drop`).

Time is an argument everywhere (`now`, epoch seconds).

This module is the only one that writes or counts `tasks` rows. The functions named `*_in`
(`enqueue_in`, `claim_in`, `done_in`, `retry_in`, `release_in`, `give_up_in`, `drop_in`, ...)
run inside a store write job that is already running, so a worker step's whole outcome — its
task and its record (a message dead, a channel chosen, an attempt noted) — lands in ONE
transaction. `TaskQueue` holds the retry policy (`TaskQueue.retry_in` decides inside a job) and
offers each primitive as its own write job for steps whose outcome touches only the task; its
dead-letter operations are synchronous, for the CLI.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from smsbridge.store import POSTGRESQL, Store, dialect_of, insert_rows


@dataclass(frozen=True)
class Task:
    id: int
    kind: str
    ref: str
    state: str  # ready | leased | dead
    attempts: int  # claims so far, this one included
    not_before: float
    lease_until: float | None
    last_error: str | None
    memo: str | None
    dead_reason: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Task:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 5.0  # seconds before the second attempt
    cap: float = 3600.0  # largest delay
    max_attempts: int = 12

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Delay after the `attempts`-th failed attempt: base·2^(n-1), capped, with "equal
        jitter" (between half and all of it) so a backlog does not retry in lock-step."""
        full = min(self.cap, self.base * (2 ** max(0, attempts - 1)))
        return full / 2 + rng.uniform(0, full / 2)


# claim order -> (index to walk, ORDER BY); "due" walks the lanes (`_lane_heads`)
_CLAIM_ORDERS = {"arrival": ("tasks_arrival", "id")}


# -- in a write job: every change to `tasks` (inside a running store write job) ---------------
# A worker step's outcome is ONE write job: these functions and the record modules' `*_in`
# functions together (e.g. `give_up_in` + inbound.messages.mark_dead_in), never two commits.


def enqueue_in(
    conn: sqlite3.Connection,
    kind: str,
    ref: str,
    now: float,
    *,
    not_before: float | None = None,
    lead: float = 0.0,
) -> int:
    """A new task, due at `not_before` (default `now`). `lead`: claimed with `order="due"` as
    if due that many seconds earlier (a reply's lane: see `claim_in`)."""
    params = (kind, ref, now if not_before is None else not_before, max(0.0, lead), now, now)
    if dialect_of(conn) == POSTGRESQL:
        return int(conn.execute(_INSERT_TASK + " RETURNING id", params).fetchone()[0])
    # SQLite: RETURNING costs a fifth of this insert; the row id is at hand
    return int(conn.execute(_INSERT_TASK, params).lastrowid or 0)


def enqueue_many_in(
    conn: sqlite3.Connection, kind: str, items: Sequence[tuple[str, float]]
) -> None:
    """New tasks of `kind`, one per (ref, now) of `items`, each due at its `now`: one statement
    for them all (the inbound SMS of many webhooks, inbound/messages.py `accept_many_in`)."""
    rows = [(kind, ref, now, 0.0, now, now) for ref, now in items]
    insert_rows(conn, _INSERT_TASK_INTO, _TASK_ROW, rows)


_INSERT_TASK_INTO = (
    "INSERT INTO tasks(kind, ref, state, attempts, not_before, lead, created_at, updated_at)"
)
_TASK_ROW = "(?, ?, 'ready', 0, ?, ?, ?, ?)"
_INSERT_TASK = f"{_INSERT_TASK_INTO} VALUES {_TASK_ROW}"


def enqueue_or_expedite_in(
    conn: sqlite3.Connection, kind: str, ref: str, now: float, *, lead: float = 0.0
) -> None:
    """Make the work (kind, ref) due now: its waiting task if it has one (so it never has
    two), else a new task (with `lead`)."""
    cur = conn.execute(
        "UPDATE tasks SET not_before = ?, updated_at = ? "
        "WHERE kind = ? AND ref = ? AND state = 'ready'",
        (now, now, kind, ref),
    )
    if cur.rowcount == 0:
        enqueue_in(conn, kind, ref, now, lead=lead)


def claim_in(
    conn: sqlite3.Connection,
    kinds: Sequence[str],
    now: float,
    lease: float,
    *,
    order: str = "arrival",
) -> Task | None:
    """Lease the next task of `kinds`: one whose lease expired (its worker died) first,
    else a due ready one — the lowest id for `order="arrival"` (inbound submits drain in
    the order they arrived), or for `order="due"` (sends) the earliest `not_before - lead`:
    a task with a lead (a reply: outbound/messages.py `Lanes`) goes before those that became
    due less than `lead` seconds before it, after older ones, so no lane starves. Each kind
    is read from its index (`tasks_arrival`; `tasks_lane`, one seek per distinct lead: a
    lane), so a backlog of 100,000 costs O(log n) per claim, not a sort. On PostgreSQL, where
    other bridges claim from the same table, the row is read `FOR UPDATE SKIP LOCKED`
    (`_locked_head`)."""
    if dialect_of(conn) == POSTGRESQL:
        locked = _locked_head(conn, kinds, now, order)
        return None if locked is None else lease_in(conn, locked, now, lease)
    marks = ",".join("?" for _ in kinds)
    row = conn.execute(
        f"SELECT * FROM tasks WHERE state = 'leased' AND kind IN ({marks}) "
        f"AND lease_until <= ? ORDER BY id LIMIT 1",
        (*kinds, now),
    ).fetchone()
    if row is None:
        if order == "due":
            ready = [head for kind in kinds for head in _lane_heads(conn, kind, now)]
            if not ready:
                return None
            row = min(ready, key=lambda r: (r["not_before"] - r["lead"], r["id"]))
        else:
            index, sort = _CLAIM_ORDERS[order]
            heads = [
                conn.execute(
                    f"SELECT * FROM tasks INDEXED BY {index} WHERE state = 'ready' AND kind = ? "
                    f"AND not_before <= ? ORDER BY {sort} LIMIT 1",
                    (kind, now),
                ).fetchone()
                for kind in kinds
            ]
            ready = [head for head in heads if head is not None]
            if not ready:
                return None
            row = min(ready, key=lambda r: r["id"])
    return lease_in(conn, row, now, lease)


def _locked_head(
    conn: sqlite3.Connection, kinds: Sequence[str], now: float, order: str
) -> sqlite3.Row | None:
    """PostgreSQL: the task `claim_in` takes, locked until this transaction ends; a task
    another bridge is claiming right now is skipped, not waited for (and is not handed out
    twice: the lease is written before that bridge commits). The lanes' order walks the
    `tasks_lane_due` index (smsbridge/postgres/schema.py)."""
    marks = ",".join("?" for _ in kinds)
    row = conn.execute(
        f"SELECT * FROM tasks WHERE state = 'leased' AND kind IN ({marks}) "
        "AND lease_until <= ? ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
        (*kinds, now),
    ).fetchone()
    if row is not None:
        return row
    sort = "not_before - lead, id" if order == "due" else _CLAIM_ORDERS[order][1]
    return conn.execute(
        f"SELECT * FROM tasks WHERE state = 'ready' AND kind IN ({marks}) AND not_before <= ? "
        f"ORDER BY {sort} LIMIT 1 FOR UPDATE SKIP LOCKED",
        (*kinds, now),
    ).fetchone()


# the claim statement of `order="due"`, walking `tasks_lane` (tests check its query plan): the
# first task of the next lane up, in (lead, not_before, id) order, the index's own
LANE_FIRST_SQL = (
    "SELECT * FROM tasks INDEXED BY tasks_lane WHERE state = 'ready' AND kind = ? "
    "AND lead > ? ORDER BY lead, not_before, id LIMIT 1"
)


def _lane_heads(conn: sqlite3.Connection, kind: str, now: float) -> list[sqlite3.Row]:
    """Per lane (each distinct `lead` among the ready tasks of `kind`, found by skipping along
    the index), its earliest task, when that is due by `now` (else nothing in the lane is):
    one statement per lane, and one to find there is no lane after the last."""
    heads: list[sqlite3.Row] = []
    lead = -1.0  # below every lead (never negative: `enqueue_in`)
    while (first := conn.execute(LANE_FIRST_SQL, (kind, lead)).fetchone()) is not None:
        lead = first["lead"]
        if first["not_before"] <= now:
            heads.append(first)
    return heads


def lease_in(conn: sqlite3.Connection, row: sqlite3.Row, now: float, lease: float) -> Task:
    """Lease the task in `row` (as read) to the caller until `now + lease`, counting an
    attempt. The memo is handed to this attempt and cleared in the row: if this attempt dies
    without recording an outcome, the next one sees no memo (and attempts > 1)."""
    conn.execute(
        "UPDATE tasks SET state = 'leased', attempts = attempts + 1, lease_until = ?, "
        "memo = NULL, updated_at = ? WHERE id = ?",
        (now + lease, now, row["id"]),
    )
    old = Task.from_row(row)
    return replace(
        old, state="leased", attempts=old.attempts + 1, lease_until=now + lease, updated_at=now
    )


def done_in(conn: sqlite3.Connection, task: Task) -> bool:
    """The task succeeded: remove it. False if the lease was lost (someone else has it)."""
    cur = conn.execute(
        "DELETE FROM tasks WHERE id = ? AND state = 'leased' AND attempts = ?",
        (task.id, task.attempts),
    )
    return cur.rowcount == 1


def retry_in(
    conn: sqlite3.Connection,
    task: Task,
    now: float,
    error: str,
    policy: RetryPolicy,
    rng: random.Random,
    *,
    retry_after: float | None = None,
    memo: str | None = None,
) -> float | None:
    """The attempt failed for now: after `policy.max_attempts` the task gives up into the
    dead-letter list (returns None; the caller records what that means for its record in the
    same job), else it is due again after the policy's backoff (at least `retry_after`, the
    peer's wish) and this returns when."""
    if task.attempts >= policy.max_attempts:
        give_up_in(conn, task, f"gave up after {task.attempts} attempts: {error}", now, memo)
        return None
    due = now + max(policy.delay(task.attempts, rng), retry_after or 0.0)
    reschedule_in(conn, task, now, due, error, memo)
    return due


def reschedule_in(
    conn: sqlite3.Connection,
    task: Task,
    now: float,
    due: float,
    error: str | None,
    memo: str | None = None,
    *,
    count_attempt: bool = True,
) -> bool:
    """Put the task back, due at `due`, with the attempt's `error` and `memo`. Without
    `count_attempt`, the attempt does not count towards giving up (`release_in`). False if the
    lease was lost."""
    cur = conn.execute(
        "UPDATE tasks SET state = 'ready', not_before = ?, lease_until = NULL, "
        "last_error = ?, memo = ?, attempts = attempts - ?, updated_at = ? "
        "WHERE id = ? AND state = 'leased' AND attempts = ?",
        (due, error, memo, int(not count_attempt), now, task.id, task.attempts),
    )
    return cur.rowcount == 1


def release_in(
    conn: sqlite3.Connection, task: Task, now: float, not_before: float, *, memo: str | None = None
) -> bool:
    """Put the task back, due at `not_before`, without counting this attempt (the peer was
    never really tried, e.g. CHT work is paused, or the next channel is to be tried)."""
    return reschedule_in(conn, task, now, not_before, task.last_error, memo, count_attempt=False)


def give_up_in(
    conn: sqlite3.Connection,
    task: Task,
    reason: str,
    now: float | None = None,
    memo: str | None = None,
) -> bool:
    """Move the task to the dead-letter list with `reason` (`memo` kept for a later retry)."""
    cur = conn.execute(
        "UPDATE tasks SET state = 'dead', dead_reason = ?, lease_until = NULL, memo = ?, "
        "updated_at = COALESCE(?, updated_at) "
        "WHERE id = ? AND state = 'leased' AND attempts = ?",
        (reason, memo, now, task.id, task.attempts),
    )
    return cur.rowcount == 1


def retry_dead_in(conn: sqlite3.Connection, task_id: int, now: float) -> bool:
    """Give a dead letter a fresh start: due now, attempts reset, its memo kept (so a step
    that might have reached its peer still knows it). False if no such dead task."""
    cur = conn.execute(
        "UPDATE tasks SET state = 'ready', not_before = ?, attempts = 0, "
        "lease_until = NULL, dead_reason = NULL, updated_at = ? "
        "WHERE id = ? AND state = 'dead'",
        (now, now, task_id),
    )
    return cur.rowcount == 1


def drop_in(conn: sqlite3.Connection, task_id: int) -> Task | None:
    """Delete the dead letter `task_id` (so what it was about can change in the same
    transaction); the task as it was, or None if no such dead task."""
    row = conn.execute(
        "DELETE FROM tasks WHERE id = ? AND state = 'dead' RETURNING *", (task_id,)
    ).fetchone()
    return None if row is None else Task.from_row(row)


def finish_in(conn: sqlite3.Connection, kind: str, ref: str) -> int:
    """The work (kind, ref) is over without its task running to the end (a phone reported on
    its SMS: outbound/phones.py): its waiting or running tasks go (a dead letter stays for the
    operator). A worker holding one loses its lease, so its outcome changes nothing. Returns
    how many went."""
    cur = conn.execute(
        "DELETE FROM tasks WHERE kind = ? AND ref = ? AND state != 'dead'", (kind, ref)
    )
    return cur.rowcount


def forget_memo_in(conn: sqlite3.Connection, kind: str, memo: str) -> int:
    """Clear `memo` from the waiting tasks of `kind` that carry it (what it promised was held
    by a process that is gone, e.g. a rate slot: outbound/ratelimit.py). Returns how many."""
    cur = conn.execute(
        "UPDATE tasks SET memo = NULL WHERE kind = ? AND memo = ? AND state = 'ready'",
        (kind, memo),
    )
    return cur.rowcount


def has_task_sql(kind_param: str, ref_column: str) -> str:
    """An SQL condition, for another table's query: a task of kind `kind_param` (a
    placeholder) exists for `ref_column` (e.g. `outgoing.ref`). Walks the `tasks_ref` index."""
    return (
        f"EXISTS (SELECT 1 FROM tasks WHERE tasks.kind = {kind_param} AND tasks.ref = {ref_column})"
    )


# -- reads for operators (metrics) ---------------------------------------------------------------


@dataclass(frozen=True)
class Backlog:
    kind: str
    dead: bool  # the dead-letter list, else waiting or running
    count: int
    oldest: float | None  # created_at of the oldest


def backlog(store: Store) -> list[Backlog]:
    """Per kind, the tasks waiting or running and those in the dead-letter list (`/metrics`)."""
    rows = store.query(
        "SELECT kind, state = 'dead' AS dead, COUNT(*), MIN(created_at) FROM tasks "
        "GROUP BY kind, state = 'dead' ORDER BY kind"
    )
    return [Backlog(r[0], bool(r[1]), r[2], r[3]) for r in rows]


class TaskQueue:
    def __init__(
        self,
        store: Store,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        *,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        """`on_retry`: called with the task's kind after each retry is committed (metrics)."""
        self.store = store
        self.policy = policy or RetryPolicy()
        self.rng = rng or random.Random()
        self.on_retry = on_retry

    # -- the worker's side: one-step outcomes, each its own write job --------------------------

    async def enqueue(
        self, kind: str, ref: str, now: float, *, not_before: float | None = None
    ) -> int:
        return await self.store.write(
            lambda c: enqueue_in(c, kind, ref, now, not_before=not_before)
        )

    async def claim(
        self, kinds: Sequence[str], now: float, lease: float, *, order: str = "arrival"
    ) -> Task | None:
        """The next task of `kinds` that is due (or whose lease expired; `order`: see
        `claim_in`), leased to the caller until `now + lease`; None when there is nothing to
        do. (A cheap read first: idle workers polling an empty queue cost no write.)"""
        if not await self.store.off_loop(lambda: self.has_due(kinds, now)):
            return None
        return await self.store.write(lambda c: claim_in(c, kinds, now, lease, order=order))

    def has_due(self, kinds: Sequence[str], now: float) -> bool:
        """Is a task of `kinds` due, or leased past its lease? One index seek per kind and
        state (a backlog of tasks due later is not scanned)."""
        return any(
            self.store.query(
                "SELECT EXISTS (SELECT 1 FROM tasks INDEXED BY tasks_due "
                " WHERE state = 'ready' AND kind = ? AND not_before <= ?) "
                "OR EXISTS (SELECT 1 FROM tasks INDEXED BY tasks_arrival "
                " WHERE state = 'leased' AND kind = ? AND lease_until <= ?)",
                (kind, now, kind, now),
            )[0][0]
            for kind in kinds
        )

    async def done(self, task: Task) -> bool:
        """The task succeeded: remove it. False if the lease was lost (someone else has it)."""
        return await self.store.write(lambda c: done_in(c, task))

    def retry_in(
        self,
        conn: sqlite3.Connection,
        task: Task,
        now: float,
        error: str,
        *,
        retry_after: float | None = None,
        memo: str | None = None,
    ) -> float | None:
        """`retry_in` (the module function) with this queue's policy and random source, inside
        the caller's write job; call `retried` once that job is committed."""
        return retry_in(
            conn, task, now, error, self.policy, self.rng, retry_after=retry_after, memo=memo
        )

    def retried(self, task: Task, due: float | None) -> None:
        """After the commit of a job that ran `retry_in`: tell `on_retry` when the task was
        rescheduled (not when it gave up)."""
        if due is not None and self.on_retry is not None:
            self.on_retry(task.kind)

    async def retry_later(
        self,
        task: Task,
        now: float,
        error: str,
        *,
        retry_after: float | None = None,
        memo: str | None = None,
    ) -> float | None:
        """Schedule another attempt with backoff; returns when it is due, or None if this was
        the last allowed attempt and the task gave up into the dead-letter list instead. (For
        a step whose failure changes nothing else; otherwise `retry_in` in the step's job.)"""
        due = await self.store.write(
            lambda c: self.retry_in(c, task, now, error, retry_after=retry_after, memo=memo)
        )
        self.retried(task, due)
        return due

    async def release(
        self, task: Task, now: float, not_before: float, *, memo: str | None = None
    ) -> None:
        """Put the task back, due at `not_before`, without counting this attempt (the peer was
        never really tried, e.g. CHT work is paused)."""
        await self.store.write(lambda c: release_in(c, task, now, not_before, memo=memo))

    async def give_up(
        self, task: Task, reason: str, *, now: float | None = None, memo: str | None = None
    ) -> bool:
        """Move the task to the dead-letter list with `reason` (`memo` kept for a later retry)."""
        return await self.store.write(lambda c: give_up_in(c, task, reason, now, memo))

    # -- the operator's side (synchronous: the CLI) ----------------------------------------

    def get(self, task_id: int) -> Task | None:
        rows = self.store.query("SELECT * FROM tasks WHERE id = ?", (task_id,))
        return Task.from_row(rows[0]) if rows else None

    def dead_letters(self, kinds: Sequence[str] | None = None, limit: int = 1000) -> list[Task]:
        if kinds:
            marks = ",".join("?" for _ in kinds)
            rows = self.store.query(
                f"SELECT * FROM tasks WHERE state = 'dead' AND kind IN ({marks}) "
                f"ORDER BY id LIMIT ?",
                (*kinds, limit),
            )
        else:
            rows = self.store.query(
                "SELECT * FROM tasks WHERE state = 'dead' ORDER BY id LIMIT ?", (limit,)
            )
        return [Task.from_row(r) for r in rows]

    def pending(self, kinds: Sequence[str] | None = None, limit: int = 1000) -> list[Task]:
        """Tasks not dead: ready or leased, in arrival order."""
        where = "state != 'dead'"
        params: tuple[str, ...] = ()
        if kinds:
            where += f" AND kind IN ({','.join('?' for _ in kinds)})"
            params = tuple(kinds)
        rows = self.store.query(
            f"SELECT * FROM tasks WHERE {where} ORDER BY id LIMIT ?", (*params, limit)
        )
        return [Task.from_row(r) for r in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        """(kind, state) -> number of tasks, for metrics and health."""
        rows = self.store.query("SELECT kind, state, COUNT(*) FROM tasks GROUP BY kind, state")
        return {(r[0], r[1]): r[2] for r in rows}

    def retry_dead(self, task_id: int, now: float) -> bool:
        """Give a dead letter a fresh start (`retry_dead_in`). False if no such dead task."""
        return self.store.write_sync(lambda c: retry_dead_in(c, task_id, now))

    def drop(self, task_id: int) -> bool:
        """Delete a dead letter for good. False if no such dead task."""
        return self.store.write_sync(lambda c: drop_in(c, task_id) is not None)


def tasks_for(store: Store, ref: str) -> list[Task]:
    """The tasks (waiting, running or dead) about `ref`: a message's uuid or ref (the console's
    page of one message)."""
    rows = store.query("SELECT * FROM tasks WHERE ref = ? ORDER BY id", (ref,))
    return [Task.from_row(r) for r in rows]
