"""The durable task queue: claims with leases, backoff, dead letters. Time is passed in."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from smsbridge import tasks
from smsbridge.store import open_store
from smsbridge.tasks import RetryPolicy, Task, TaskQueue
from tests.conftest import only_on


@pytest.fixture
def outbox(database: Path | str) -> Iterator[TaskQueue]:
    with open_store(database) as store:
        yield TaskQueue(store, RetryPolicy(base=10, cap=100, max_attempts=3), random.Random(1))


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_claims_take_the_oldest_due_task_first(outbox: TaskQueue) -> None:
    first = run(outbox.enqueue("submit", "a", 100.0))
    run(outbox.enqueue("submit", "b", 101.0))
    task = run(outbox.claim(["submit"], 200.0, 30))
    assert task is not None and task.id == first and task.ref == "a" and task.attempts == 1


def test_a_task_is_not_claimed_before_it_is_due(outbox: TaskQueue) -> None:
    run(outbox.enqueue("submit", "a", 100.0, not_before=150.0))
    assert run(outbox.claim(["submit"], 149.0, 30)) is None
    assert run(outbox.claim(["submit"], 150.0, 30)) is not None


def test_claims_filter_by_kind(outbox: TaskQueue) -> None:
    run(outbox.enqueue("send", "a", 100.0))
    assert run(outbox.claim(["submit"], 100.0, 30)) is None
    assert run(outbox.claim(["send", "submit"], 100.0, 30)) is not None


def test_a_leased_task_is_not_claimed_twice_until_its_lease_expires(outbox: TaskQueue) -> None:
    run(outbox.enqueue("submit", "a", 100.0))
    first = run(outbox.claim(["submit"], 100.0, 30))
    assert run(outbox.claim(["submit"], 129.9, 30)) is None
    again = run(outbox.claim(["submit"], 130.0, 30))  # the first worker crashed
    assert first is not None and again is not None
    assert again.id == first.id and again.attempts == 2
    # the first worker's late "done" no longer counts: the task is someone else's now
    assert run(outbox.done(first)) is False
    assert run(outbox.done(again)) is True
    assert outbox.pending() == []


def test_retry_later_backs_off_exponentially_with_jitter_and_cap(outbox: TaskQueue) -> None:
    policy = RetryPolicy(base=10, cap=100, max_attempts=20)
    rng = random.Random(7)
    for attempts, full in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (9, 100)]:
        delay = policy.delay(attempts, rng)
        assert full / 2 <= delay <= full


def test_retry_later_reschedules_and_counts_attempts(outbox: TaskQueue) -> None:
    run(outbox.enqueue("submit", "a", 0.0))
    task = run(outbox.claim(["submit"], 0.0, 30))
    due = run(outbox.retry_later(task, 0.0, "timeout", memo="not_sent"))
    assert due is not None and 5.0 <= due <= 10.0
    assert run(outbox.claim(["submit"], due - 0.01, 30)) is None
    again = run(outbox.claim(["submit"], due, 30))
    assert again is not None and again.attempts == 2
    assert again.last_error == "timeout" and again.memo == "not_sent"


def test_retry_after_from_the_peer_is_honoured(outbox: TaskQueue) -> None:
    run(outbox.enqueue("submit", "a", 0.0))
    task = run(outbox.claim(["submit"], 0.0, 30))
    due = run(outbox.retry_later(task, 0.0, "429", retry_after=500))
    assert due == 500.0


def test_after_max_attempts_the_task_is_a_dead_letter(outbox: TaskQueue) -> None:
    run(outbox.enqueue("submit", "a", 0.0))
    now = 0.0
    for _ in range(2):
        task = run(outbox.claim(["submit"], now, 30))
        now = run(outbox.retry_later(task, now, "boom"))
    task = run(outbox.claim(["submit"], now, 30))
    assert run(outbox.retry_later(task, now, "boom")) is None
    [dead] = outbox.dead_letters()
    assert dead.state == "dead" and "after 3 attempts" in (dead.dead_reason or "")
    assert run(outbox.claim(["submit"], now + 10_000, 30)) is None


def test_give_up_then_operator_retry_and_drop(outbox: TaskQueue) -> None:
    run(outbox.enqueue("submit", "a", 0.0))
    run(outbox.enqueue("submit", "b", 0.0))
    a = run(outbox.claim(["submit"], 0.0, 30))
    b = run(outbox.claim(["submit"], 0.0, 30))
    assert run(outbox.give_up(a, "cht rejected it"))
    assert run(outbox.give_up(b, "parser crash"))
    assert [t.dead_reason for t in outbox.dead_letters()] == ["cht rejected it", "parser crash"]
    assert outbox.retry_dead(a.id, 50.0) is True
    again = run(outbox.claim(["submit"], 50.0, 30))
    assert again is not None and again.id == a.id and again.attempts == 1
    assert outbox.drop(b.id) is True
    assert outbox.drop(b.id) is False
    assert outbox.retry_dead(12345, 50.0) is False
    assert outbox.dead_letters() == []


def test_release_puts_a_task_back_without_counting_the_attempt(outbox: TaskQueue) -> None:
    run(outbox.enqueue("submit", "a", 0.0))
    task = run(outbox.claim(["submit"], 0.0, 30))
    run(outbox.release(task, 0.0, 60.0, memo="not_sent"))
    assert run(outbox.claim(["submit"], 59.0, 30)) is None
    again = run(outbox.claim(["submit"], 60.0, 30))
    assert again is not None and again.attempts == 1


def test_tasks_survive_reopening_the_database(database: Path | str) -> None:
    with open_store(database) as store:
        run(TaskQueue(store).enqueue("submit", "a", 0.0))
    with open_store(database) as store:
        task = run(TaskQueue(store).claim(["submit"], 1.0, 30))
        assert task is not None and task.ref == "a"


@pytest.mark.parametrize(("order", "index"), [("arrival", "tasks_arrival"), ("due", "tasks_lane")])
def test_claims_walk_an_index_not_a_sort(
    outbox: TaskQueue, order: str, index: str, backend: str
) -> None:
    """A backlog of many thousand tasks (CHT down for hours) must not make each claim sort
    every ready task: the statements `claim_in` really runs are answered from an index."""
    only_on(backend, "sqlite", "SQLite's query plans, traced (PostgreSQL: tests/test_pgstore.py)")
    for ref in ("a", "b"):
        run(outbox.enqueue("submit", ref, 100.0))
    statements: list[str] = []

    def claim(conn: sqlite3.Connection) -> Task | None:
        conn.set_trace_callback(statements.append)
        try:
            return tasks.claim_in(conn, ["submit"], 200.0, 30, order=order)
        finally:
            conn.set_trace_callback(None)

    task = outbox.store.write_sync(claim)
    assert task is not None and task.ref == "a"
    plans = {
        sql: " ".join(str(tuple(row)) for row in outbox.store.query("EXPLAIN QUERY PLAN " + sql))
        for sql in statements
        if sql.lstrip().upper().startswith("SELECT")
    }
    assert plans
    for sql, plan in plans.items():
        searched = "USING INDEX" in plan or "USING COVERING INDEX" in plan
        assert searched and "TEMP B-TREE" not in plan, (sql, plan)
    assert any(index in plan for plan in plans.values())


def test_due_claims_rank_a_task_with_a_lead_as_if_due_that_much_earlier(outbox: TaskQueue) -> None:
    """Lanes (a reply's lead: outbound/messages.py `Lanes`): each distinct lead is a lane; the
    claim takes the task with the earliest `not_before - lead`, so a lead goes ahead of tasks
    due less than it before, and behind older ones."""

    def add(ref: str, due: float, lead: float = 0.0) -> None:
        outbox.store.write_sync(
            lambda c: tasks.enqueue_in(c, "send", ref, 0.0, not_before=due, lead=lead)
        )

    for i in range(3):
        add(f"bulk{i}", 100.0 + i)
    add("reply", 150.0, lead=60.0)  # ranks at 90: first
    add("urgent", 500.0, lead=450.0)  # ranks at 50, but not due before 500
    add("late-reply", 400.0, lead=60.0)  # ranks at 340: behind the bulk due before it
    add("dead-reply", 150.0, lead=60.0)
    dead = outbox.store.write_sync(lambda c: tasks.claim_in(c, ["send"], 150.0, 30, order="due"))
    assert dead is not None and dead.ref == "reply"
    outbox.store.write_sync(lambda c: tasks.give_up_in(c, dead, "test"))  # a lead; dead: skipped

    def order(now: float, n: int) -> list[str]:
        claimed = [run(outbox.claim(["send"], now, 1000, order="due")) for _ in range(n)]
        return [task.ref for task in claimed if task is not None]

    assert order(400.0, 5) == ["dead-reply", "bulk0", "bulk1", "bulk2", "late-reply"]
    assert order(499.0, 1) == []
    assert order(500.0, 2) == ["urgent"]


def test_an_expired_lease_is_taken_before_newer_ready_tasks(outbox: TaskQueue) -> None:
    run(outbox.enqueue("submit", "a", 100.0))
    first = run(outbox.claim(["submit"], 100.0, 30))  # its worker dies
    run(outbox.enqueue("submit", "b", 101.0))
    again = run(outbox.claim(["submit"], 131.0, 30))
    assert first is not None and again is not None
    assert again.ref == "a" and again.attempts == 2


def test_has_due_sees_a_due_task_or_an_expired_lease_of_any_of_its_kinds(outbox: TaskQueue) -> None:
    run(outbox.enqueue("send", "later", 100.0, not_before=500.0))
    run(outbox.enqueue("submit", "a", 100.0))
    assert run(outbox.claim(["submit"], 100.0, 30)) is not None  # leased until 130
    assert not outbox.has_due(["submit", "send"], 120.0)
    assert outbox.has_due(["submit"], 130.0)  # its worker died
    assert not outbox.has_due(["send"], 499.0)
    assert outbox.has_due(["submit", "send"], 500.0) and outbox.has_due(["send"], 500.0)


def test_enqueue_or_expedite_makes_the_waiting_task_due_instead_of_adding_one(
    outbox: TaskQueue,
) -> None:
    run(outbox.enqueue("send", "m1", 100.0, not_before=900.0))
    outbox.store.write_sync(lambda c: tasks.enqueue_or_expedite_in(c, "send", "m1", 200.0))
    [task] = outbox.pending(["send"])
    assert task.ref == "m1" and task.not_before == 200.0
    outbox.store.write_sync(lambda c: tasks.enqueue_or_expedite_in(c, "send", "m2", 200.0))
    assert [t.ref for t in outbox.pending(["send"])] == ["m1", "m2"]
