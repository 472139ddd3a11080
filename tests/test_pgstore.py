"""What only PostgreSQL does (smsbridge/postgres/store.py, smsbridge/postgres/schema.py): one schema
on both engines, `?` SQL spoken to psycopg, and several bridges (here: several stores, as each
bridge process has one) on one database: claims that skip what another holds, a unique key another
bridge just took, the CHT sync's lock, and the settings and locks that let them share it.

Everything else the store does is tested on both engines by tests/test_store.py. Each test
asks for a PostgreSQL database (tests/postgres.py): without the server binaries or psycopg they
skip, or fail with CI set."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from smsbridge import tasks
from smsbridge.dblock import hold_database
from smsbridge.inbound import messages
from smsbridge.loopback import wait_for
from smsbridge.migrations import MIGRATIONS
from smsbridge.outbound import messages as outgoing
from smsbridge.outbound.ratebuckets import shared_buckets
from smsbridge.outbound.ratelimit import RateLimiter, parse_rates
from smsbridge.postgres.schema import PG_MIGRATIONS
from smsbridge.settings import Settings
from smsbridge.sms import DeliveryState, InboundSms
from smsbridge.store import Store, open_store

T0 = 1_700_000_000.0


@pytest.fixture
def url(pg_database: str) -> str:
    return pg_database


@pytest.fixture
def two(url: str) -> Iterator[tuple[Store, Store]]:
    """Two stores on one PostgreSQL database: what two bridges have."""
    with open_store(url) as first, open_store(url) as second:
        yield first, second


def _held(store: Store, job: Callable[[Any], object]) -> tuple[threading.Event, threading.Event]:
    """Run `job` on `store`'s writer and keep its transaction open until the second event is
    set (the first is set once `job` has run)."""
    ran, release = threading.Event(), threading.Event()

    def hold(conn: Any) -> None:
        job(conn)
        ran.set()
        release.wait(20)

    store.submit(hold)
    assert ran.wait(20)
    return ran, release


# -- one schema, two dialects ---------------------------------------------------------------------


def _sqlite_shape(path: Path) -> dict[str, Any]:
    with Store(path) as store:
        tables = [
            r[0]
            for r in store.query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        shape: dict[str, Any] = {}
        for table in tables:
            info = store.query(f"PRAGMA table_info({table})")
            columns = {r["name"] for r in info}
            key = tuple(r["name"] for r in sorted(info, key=lambda r: r["pk"]) if r["pk"])
            uniques = {key} if key else set()
            for index in store.query(f"PRAGMA index_list({table})"):
                if index["unique"]:
                    cols = store.query(f"PRAGMA index_info({index['name']})")
                    uniques.add(tuple(r["name"] for r in cols))
            shape[table] = (columns, uniques)
        return shape


def _pg_shape(url: str) -> dict[str, Any]:
    with open_store(url) as store:
        tables = [
            r[0]
            for r in store.query(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_name <> 'smsbridge_schema'"
            )
        ]
        shape: dict[str, Any] = {}
        for table in tables:
            columns = {
                r[0]
                for r in store.query(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = ?",
                    (table,),
                )
            }
            uniques = {
                tuple(r[0].split(","))
                for r in store.query(
                    "SELECT string_agg(a.attname, ',' ORDER BY k.n) FROM pg_index i "
                    "JOIN pg_class c ON c.oid = i.indrelid "
                    "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
                    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
                    "WHERE c.relname = ? AND i.indisunique GROUP BY i.indexrelid",
                    (table,),
                )
            }
            shape[table] = (columns, uniques)
        return shape


def test_both_schemas_have_the_same_tables_columns_and_unique_keys(
    tmp_path: Path, url: str
) -> None:
    names = [m.__name__ for m in MIGRATIONS]
    assert len(PG_MIGRATIONS) == len(MIGRATIONS), (
        f"smsbridge/postgres/schema.py needs the PostgreSQL twin of {names[len(PG_MIGRATIONS) :]}"
    )
    sqlite, pg = _sqlite_shape(tmp_path / "s.db"), _pg_shape(url)
    assert sorted(pg) == sorted(sqlite)
    for table, (columns, uniques) in sqlite.items():
        assert pg[table][0] == columns, table
        assert pg[table][1] == uniques, table


def test_the_schema_version_means_the_same_on_both(url: str) -> None:
    with open_store(url) as store:
        assert store.version == len(MIGRATIONS)
    with open_store(url, migrate=False) as store:  # what the CLI opens
        assert store.version == len(MIGRATIONS)


def test_bridges_started_together_on_an_empty_database_migrate_it_once(
    pg_server: Any,
) -> None:
    url = pg_server.create_database()
    versions: list[int] = []
    failures: list[BaseException] = []

    def start() -> None:
        try:
            with open_store(url) as store:
                versions.append(store.version)
        except BaseException as exc:
            failures.append(exc)

    starting = [threading.Thread(target=start) for _ in range(4)]
    for thread in starting:
        thread.start()
    for thread in starting:
        thread.join(60)
    assert failures == [] and versions == [len(MIGRATIONS)] * 4


# -- SQL written for SQLite, spoken to psycopg -----------------------------------------------------


def test_placeholders_are_converted_outside_quotes_only(url: str) -> None:
    from smsbridge.postgres.connection import convert

    assert convert("SELECT * FROM t WHERE a = ? AND b LIKE '%?%'") == (
        "SELECT * FROM t WHERE a = %s AND b LIKE '%%?%%'"
    )
    assert convert("SELECT 'it''s ?', ? % 2") == "SELECT 'it''s ?', %s %% 2"
    assert convert("SELECT * FROM tasks INDEXED BY tasks_lane WHERE id = ?") == (
        "SELECT * FROM tasks WHERE id = %s"
    )
    assert convert("SELECT :a, ':b', x::text", named=True) == "SELECT %(a)s, ':b', x::text"


def test_rows_read_as_sqlite_rows_do(url: str) -> None:
    with open_store(url) as store:
        store.write_sync(lambda c: Store.put_kv(c, "k", "50%", 1.5))
        (row,) = store.query("SELECT key, value, updated_at FROM kv WHERE value LIKE '%\\%'")
        assert (row["key"], row[1], dict(row)["updated_at"]) == ("k", "50%", 1.5)
        assert list(row) == ["k", "50%", 1.5] and row.keys() == ["key", "value", "updated_at"]
        (total,) = store.query("SELECT SUM(attempts) FROM tasks")
        assert total[0] is None
        store.write_sync(lambda c: tasks.enqueue_in(c, "x", "r", T0))
        (total,) = store.query("SELECT SUM(attempts) + 2 FROM tasks")
        assert total[0] == 2 and isinstance(total[0], int)  # numeric, read as SQLite would


# -- several bridges on one database ---------------------------------------------------------------


def test_a_task_another_bridge_is_claiming_is_skipped_not_waited_for(
    two: tuple[Store, Store],
) -> None:
    first, second = two
    for ref in ("a", "b"):
        first.write_sync(lambda c, r=ref: tasks.enqueue_in(c, "submit", r, T0))
    taken: list[tasks.Task | None] = []
    _, release = _held(first, lambda c: taken.append(tasks.claim_in(c, ["submit"], T0, 30)))
    try:
        other = second.submit(lambda c: tasks.claim_in(c, ["submit"], T0, 30)).result(10)
    finally:
        release.set()
    assert taken[0] is not None and taken[0].ref == "a"
    assert other is not None and other.ref == "b"


class _Recording:
    """A job's connection that notes each statement run through it."""

    dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements: list[tuple[str, Any]] = []

    def execute(self, sql: str, params: Any = ()) -> Any:
        self.statements.append((sql, params))
        return self.conn.execute(sql, params)


@pytest.mark.parametrize("order", ["arrival", "due"])
def test_claims_walk_an_index_not_a_sort(url: str, order: str) -> None:
    """A backlog of 20,000 ready tasks: the statement that picks the next one is answered from
    an index (tasks_arrival's id order, smsbridge/postgres/schema.py's tasks_lane_due), never a
    sort."""
    with open_store(url) as store:
        store.write_sync(
            lambda c: c.execute(
                "INSERT INTO tasks(kind, ref, state, attempts, not_before, lead, created_at, "
                "updated_at) SELECT 'send', 'r' || g, 'ready', 0, g, (g % 3) * 10, 0, 0 "
                "FROM generate_series(1, 20000) g"
            )
        )
        store.write_sync(lambda c: c.execute("ANALYZE tasks"))
        recording: list[_Recording] = []

        def claim(conn: Any) -> Any:
            recording.append(_Recording(conn))
            return tasks.claim_in(recording[0], ["send"], T0, 30, order=order)  # type: ignore[arg-type]

        assert store.write_sync(claim) is not None
        [(sql, params)] = [s for s in recording[0].statements if "state = 'ready'" in s[0]]
        plan = " ".join(
            r[0] for r in store.write_sync(lambda c: c.execute("EXPLAIN " + sql, params).fetchall())
        )
        assert "Index" in plan and "Sort" not in plan, plan


def test_bridges_claiming_together_take_every_task_once(two: tuple[Store, Store]) -> None:
    first, second = two
    refs = [f"r{n:03d}" for n in range(200)]
    first.write_sync(lambda c: [tasks.enqueue_in(c, "send", r, T0) for r in refs])

    async def drain(store: Store, got: list[str]) -> None:
        while (
            task := await tasks.TaskQueue(store).claim(["send"], T0, 60, order="due")
        ) is not None:
            got.append(task.ref)

    async def both() -> tuple[list[str], list[str]]:
        a: list[str] = []
        b: list[str] = []
        workers = [drain(first, a) for _ in range(4)] + [drain(second, b) for _ in range(4)]
        await asyncio.gather(*workers)
        return a, b

    a, b = asyncio.run(both())
    assert sorted(a + b) == refs  # each once: none twice, none lost
    assert a and b  # both bridges had their share


def test_the_same_webhook_accepted_by_two_bridges_at_once_is_stored_once(
    two: tuple[Store, Store],
) -> None:
    """Bridge 1 has stored the SMS but not committed yet; bridge 2's insert waits for it, then
    meets the unique key: its (rerunnable) accept job runs again and sees a duplicate."""
    first, second = two
    sms = InboundSms("generic", "gw-1", "+254712345678", "P 12 Jane", datetime.now(UTC))
    accepted: list[Any] = []
    _, release = _held(first, lambda c: accepted.extend(messages.accept_in(c, [sms], T0, 60)))

    async def accept() -> Any:
        return await second.write(lambda c: messages.accept_in(c, [sms], T0, 60), rerunnable=True)

    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(asyncio.run(accept())))
    worker.start()

    def waiting_on_a_lock() -> bool:
        rows = first.query("SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        return rows[0][0] > 0

    try:
        wait_for(waiting_on_a_lock, "bridge 2's insert waiting on bridge 1's", timeout=20)
    finally:
        release.set()
    worker.join(20)
    [(again,)] = results
    assert not accepted[0].duplicate and again.duplicate and again.uuid == accepted[0].uuid
    assert first.query("SELECT COUNT(*) FROM messages")[0][0] == 1


def test_one_bridge_at_a_time_holds_the_cht_sync(two: tuple[Store, Store]) -> None:
    first, second = two
    with first.exclusive("cht_sync") as mine:
        assert mine
        with first.exclusive("cht_sync") as again:
            assert not again  # not re-entrant: a second sync of this process waits its turn
        with second.exclusive("cht_sync") as theirs:
            assert not theirs  # still held after the nested block
        with second.exclusive("other_work") as other:
            assert other  # another name, another lock
    with second.exclusive("cht_sync") as theirs:
        assert theirs  # released at the end of the block


def test_deployments_in_two_schemas_of_one_database_do_not_wait_for_each_other(url: str) -> None:
    """`serialize_in` is scoped to the schema, as the CHT sync's and the migrations' locks are:
    a key held by the deployment in schema `a` does not hold up the one in schema `b`."""
    import psycopg

    from smsbridge.store import serialize_in

    with psycopg.connect(url, autocommit=True) as admin:
        for schema in ("a", "b"):
            admin.execute(f"CREATE SCHEMA {schema}")
    in_a, in_b = (f"{url}?options=-csearch_path%3D{schema}" for schema in ("a", "b"))
    with open_store(in_a) as first, open_store(in_b) as second:
        _, release = _held(first, lambda c: serialize_in(c, "outgoing", "1"))
        try:
            assert second.submit(lambda c: serialize_in(c, "outgoing", "1")).result(20) is None
        finally:
            release.set()


def test_sqlite_grants_the_exclusive_work_to_its_one_bridge(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store, store.exclusive("cht_sync") as mine:
        assert mine


# -- configuration ---------------------------------------------------------------------------------


def test_smsbridge_database_takes_a_path_or_a_postgresql_url() -> None:
    for url in ("postgresql://u:p@db.example.org/sms", "postgres://db.example.org/sms"):
        assert Settings.from_env({"SMSBRIDGE_DATABASE": url}).database == url
    assert Settings.from_env({"SMSBRIDGE_DATABASE": "/var/lib/x.db"}).database == Path(
        "/var/lib/x.db"
    )
    with pytest.raises(Exception, match="SMSBRIDGE_DATABASE"):
        Settings.from_env({"SMSBRIDGE_DATABASE": "mysql://db.example.org/sms"})


def test_any_number_of_bridges_may_hold_one_postgresql_database(url: str) -> None:
    with hold_database(url) as first, hold_database(url) as second:
        assert first is None and second is None


def test_messages_name_the_database_without_its_password(url: str) -> None:
    from smsbridge.postgres.store import PgStore
    from smsbridge.postgres.url import masked

    assert masked("postgresql://sms:s3cret@db:5432/sms") == "postgresql://sms:****@db:5432/sms"
    with open_store(url) as store:
        assert isinstance(store, PgStore) and store.dialect == "postgresql"
    with pytest.raises(Exception, match="cannot connect") as refused:
        open_store("postgresql://sms:s3cret@127.0.0.1:9/sms")
    assert "s3cret" not in str(refused.value)


def test_a_sqlite_path_still_opens_an_sqlite_store(tmp_path: Path) -> None:
    with open_store(tmp_path / "b.db") as store:
        assert store.dialect == "sqlite" and isinstance(store.reader(), sqlite3.Connection)


def test_bridges_on_one_database_share_each_channels_rate(two: tuple[Store, Store]) -> None:
    """5 segments a second on twilio, bucket full: two bridges asking at once get 5 in all,
    not 5 each."""
    rates = parse_rates("twilio=5")
    limiters = [
        RateLimiter(rates, started=T0 - 3600, shared=shared_buckets(store)) for store in two
    ]
    taken = [limiter.try_take("twilio", 1, T0) for _ in range(10) for limiter in limiters]
    assert taken.count(True) == 5
    assert all(limiter.wait_time("twilio", 1, T0) > 0 for limiter in limiters)
    later = [limiter.try_take("twilio", 1, T0 + 0.2) for limiter in limiters]
    assert later.count(True) == 1  # one more segment refilled in 0.2 s, for one of them


def test_a_delivery_report_reaching_another_bridge_applies(url: str, tmp_path: Path) -> None:
    """Twilio calls back whichever bridge the load balancer picks: the one that did not send
    the SMS finds it by its carrier id in the shared database."""
    from tests.conftest import running_bridge
    from tests.outbound.test_delivery import _sent, _state, _status_path

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_bridge(tmp_path / "a", SMSBRIDGE_DATABASE=url) as sender,
        running_bridge(tmp_path / "b", SMSBRIDGE_DATABASE=url) as other,
    ):
        _sent(sender, "m-1", "generic", "g-1")
        report = {"ref": "m-1", "status": "delivered"}
        assert other.http.post(_status_path(other, "generic"), data=report).status_code == 200
        assert _state(sender, "m-1") is DeliveryState.DELIVERED


def test_while_one_bridge_exchanges_with_cht_the_others_skip_their_turn(
    two: tuple[Store, Store], chtsim: tuple[Any, str]
) -> None:
    from smsbridge.cht.client import ChtClient
    from smsbridge.outbound.chtsync import SYNC_LOCK, ChtSync

    sim, cht_url = chtsim
    message_id = sim.add_outgoing("+254712345678", "Your results are ready")
    first, second = two

    async def play() -> None:
        async with ChtClient(cht_url, ("admin", "pass"), timeout=10) as cht:
            syncing = ChtSync(second, cht, interval=30, ttl=86400)
            with first.exclusive(SYNC_LOCK) as held:  # the first bridge is exchanging
                assert held
                await syncing.step(T0)
                assert outgoing.get(second, message_id) is None  # no exchange here
            await syncing.step(T0 + 1)
            assert outgoing.get(second, message_id) is not None

    asyncio.run(play())


def test_the_consoles_hours_are_whole_hours(url: str) -> None:
    """PostgreSQL's CAST rounds where SQLite's truncates: an SMS a second before the end of
    the first hour is counted in the first hour."""
    with open_store(url) as store:
        store.write_sync(lambda c: outgoing.insert_in(c, "h-1", "+254712345678", "x", T0 + 3599))
        assert outgoing.hourly(store, T0) == [(0, "queued", 1)]


def test_check_config_shows_the_database_url_without_its_password() -> None:
    settings = Settings.from_env({"SMSBRIDGE_DATABASE": "postgresql://sms:s3cret@db:5432/sms"})
    shown = dict(settings.described())["SMSBRIDGE_DATABASE"]
    assert shown == "postgresql://sms:****@db:5432/sms"


def test_a_batch_that_loses_a_deadlock_to_another_bridge_runs_again(
    two: tuple[Store, Store],
) -> None:
    first, second = two
    for key in ("x", "y"):
        first.write_sync(lambda c, k=key: Store.put_kv(c, k, "-", T0))
    holding = {"first": threading.Event(), "second": threading.Event()}

    def crossing(me: str, other: str, keys: tuple[str, str]) -> Callable[[Any], str]:
        def job(conn: Any) -> str:
            conn.execute("UPDATE kv SET value = ? WHERE key = ?", (me, keys[0]))
            holding[me].set()
            holding[other].wait(10)  # each now waits for the row the other holds
            conn.execute("UPDATE kv SET value = ? WHERE key = ?", (me, keys[1]))
            return me

        return job

    one = first.submit(crossing("first", "second", ("x", "y")))
    two_ = second.submit(crossing("second", "first", ("y", "x")))
    assert (one.result(60), two_.result(60)) == ("first", "second")  # neither failed
    assert first.dialect == second.dialect == "postgresql"
    assert first.batch_retries + second.batch_retries >= 1  # PostgreSQL's victim ran again
    values = {r[0] for r in first.query("SELECT value FROM kv WHERE key IN ('x', 'y')")}
    assert len(values) == 1  # the victim ran again whole: both rows hold its value


# -- the CLI on a PostgreSQL database --------------------------------------------------------------


def test_migrate_backup_and_check_config_on_a_postgresql_url(
    url: str, cli_database: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from smsbridge.cli.check_config import check
    from smsbridge.cli.main import main

    monkeypatch.setenv("SMSBRIDGE_DATABASE", url)
    assert main(["migrate"]) == 0
    assert f"schema version 0 -> {len(MIGRATIONS)}" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["backup", str(cli_database.parent / "copy.db")]) == 2
    assert "pg_dump" in capsys.readouterr().err
    assert check({"SMSBRIDGE_DATABASE": url}).problems == []
    unreachable = "postgresql://sms:s3cret@127.0.0.1:9/sms"
    [problem] = [p for p in check({"SMSBRIDGE_DATABASE": unreachable}).problems if "DATABASE" in p]
    assert "cannot connect" in problem and "s3cret" not in problem


def _part(n: int) -> InboundSms:
    extra = {"concat-ref": "7", "concat-total": "2", "concat-part": str(n)}
    return InboundSms(
        "vonage", f"p-{n}", "+254712345678", f"part {n} ", datetime.now(UTC), extra=extra
    )


def test_the_parts_of_a_long_sms_reaching_two_bridges_at_once_are_joined(
    two: tuple[Store, Store],
) -> None:
    """Bridge 1 has stored part 1 but not committed; bridge 2 gets part 2 meanwhile: it waits
    for part 1 (smsbridge/store.py `serialize_in`) and joins the two, instead of leaving both
    waiting PART_WAIT for the `assemble` task."""
    first, second = two
    _, release = _held(first, lambda c: messages.accept_in(c, [_part(1)], T0, 60))
    joined = second.submit(lambda c: messages.accept_in(c, [_part(2)], T0, 60))
    wait_for(
        lambda: first.query("SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")[
            0
        ][0],
        "bridge 2 waiting for bridge 1's part",
        timeout=20,
    )
    release.set()
    [accepted] = joined.result(20)
    assert not accepted.duplicate
    [text] = [r[0] for r in first.query("SELECT text FROM messages")]
    assert text == "part 1 part 2 "


def test_a_lost_database_connection_is_a_503_then_heals(url: str, tmp_path: Path) -> None:
    """The server drops the bridge's connections (a restart, a failover): the webhook gets 503
    with Retry-After and nothing about the server, and the next one is stored."""
    import psycopg

    from tests.conftest import running_bridge

    with running_bridge(tmp_path, SMSBRIDGE_DATABASE=url) as bridge:
        path = bridge.inbound_path("generic")
        assert bridge.http.post(path, data={"from": "+1555", "text": "a", "id": "1"}).is_success
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        refused = bridge.http.post(path, data={"from": "+1555", "text": "b", "id": "2"})
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
        assert "127.0.0.1" not in refused.text and "postgres" not in refused.text.lower()
        again = bridge.http.post(path, data={"from": "+1555", "text": "b", "id": "2"})
        assert again.is_success
        assert [m["external_id"] for m in bridge.messages()] == ["1", "2"]


# -- split SMS settled by two bridges at once ------------------------------------------------------


def test_two_bridges_settling_different_parts_of_one_sms_at_once_deliver_it(
    two: tuple[Store, Store],
) -> None:
    """The carrier's DELIVERED reports for parts 1/2 and 2/2 reach one bridge each: the second
    waits for the first (outbound/parts.py) and sees part 1 delivered, so the SMS is
    delivered, not left `sent` forever by two transactions each seeing the other part sent."""
    from smsbridge.outbound import parts
    from smsbridge.segments import standalone_parts

    first, second = two
    text = "word " * 60

    def planned(conn: Any) -> list[parts.Part]:
        outgoing.insert_in(conn, "s-1", "+254712345678", text, T0)
        message = outgoing.get_in(conn, "s-1")
        assert message is not None
        for part in parts.plan_in(conn, message, standalone_parts(text), T0):
            parts.accepted_in(conn, part, "generic", "generic", f"g-{part.part}", _SENT, T0)
        return parts.of_in(conn, message.id)

    one, other = first.write_sync(planned)
    assert outgoing.get(first, "s-1").state is _SENT  # type: ignore[union-attr]
    _, release = _held(first, lambda c: parts.advance_in(c, one, _DELIVERED, T0 + 1))
    settled = second.submit(lambda c: parts.advance_in(c, other, _DELIVERED, T0 + 1))
    try:
        wait_for(
            lambda: settled.done() or _waiting_on_a_lock(first),
            "bridge 2's report applied, or waiting for bridge 1's",
            timeout=20,
        )
    finally:
        release.set()
    settled.result(20)
    assert [p.state for p in parts.of(first, one.outgoing_id)] == [_DELIVERED, _DELIVERED]
    assert outgoing.get(first, "s-1").state is _DELIVERED  # type: ignore[union-attr]


_SENT, _DELIVERED = DeliveryState.SENT, DeliveryState.DELIVERED


def _waiting_on_a_lock(store: Store) -> bool:
    return bool(
        store.query(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )[0][0]
    )


# -- a stalled or lost peer ------------------------------------------------------------------------


def test_connections_give_up_on_a_silent_server_unless_the_url_says_otherwise(url: str) -> None:
    """Without a connect timeout, keepalives and a TCP user timeout a bridge waits for a lost
    server (or a dead network) as long as the kernel does: hours."""
    with open_store(url) as store:
        given = store.reader().raw.info.get_parameters()  # type: ignore[attr-defined]
        assert given["connect_timeout"] == "5"
        assert (given["keepalives_idle"], given["keepalives_count"]) == ("10", "3")
        assert given["tcp_user_timeout"] == "30000"
    with open_store(url + "?connect_timeout=17&tcp_user_timeout=0") as store:
        given = store.reader().raw.info.get_parameters()  # type: ignore[attr-defined]
        assert (given["connect_timeout"], given["tcp_user_timeout"]) == ("17", "0")


def test_a_key_another_session_keeps_fails_that_job_alone_with_a_503(url: str) -> None:
    """Another bridge inserted a key and then stalled (its machine lost) with its transaction
    open: the job that needs that key gives up after the lock timeout with a 503, and an
    unrelated job of the same writer is committed meanwhile, not held up for hours."""
    import psycopg

    from smsbridge.postgres.connection import DatabaseUnavailable

    with open_store(url) as store, psycopg.connect(url) as stalled:
        stalled.execute("INSERT INTO kv(key, value, updated_at) VALUES ('k', 'theirs', 0)")
        blocked = store.submit(lambda c: Store.put_kv(c, "k", "ours", T0))
        unrelated = store.submit(lambda c: Store.put_kv(c, "other", "ours", T0))
        try:
            assert unrelated.result(30) is None
            with pytest.raises(DatabaseUnavailable) as refused:
                blocked.result(30)
            assert refused.value.http_status == 503 and refused.value.headers["Retry-After"]
        finally:
            stalled.rollback()
        assert store.get_kv("other") == "ours" and store.get_kv("k") is None


def test_the_event_loop_goes_on_while_a_worker_waits_for_the_database(url: str) -> None:
    """A worker's poll for due tasks waits on the server (here: a table another session has
    locked; a stalled server or a lost network is the same to the bridge): meanwhile the
    event loop serves everything else, and the poll ends once the server answers."""
    import psycopg

    with open_store(url) as store:
        queue = tasks.TaskQueue(store)
        store.write_sync(lambda c: tasks.enqueue_in(c, "submit", "r-1", T0))
        loop_ran, released = threading.Event(), threading.Event()
        with psycopg.connect(url) as locker:
            locker.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")

            def release() -> None:  # after the loop has run, or 30 s: the test then fails
                loop_ran.wait(30)
                released.set()
                locker.rollback()

            releaser = threading.Thread(target=release, daemon=True)
            releaser.start()

            async def play() -> tasks.Task | None:
                claim = asyncio.create_task(queue.claim(["submit"], T0, 30))
                await asyncio.to_thread(
                    wait_for, lambda: _waiting_on_a_lock(store), "the poll waiting", 20
                )
                served_meanwhile = not released.is_set()
                loop_ran.set()
                assert served_meanwhile, "the event loop stood still while the poll waited"
                return await claim

            try:
                claimed = asyncio.run(play())
            finally:
                loop_ran.set()
                releaser.join(40)
        assert claimed is not None and claimed.ref == "r-1"


def test_the_event_loop_goes_on_while_the_cht_sync_waits_for_its_turn(
    url: str, chtsim: tuple[Any, str]
) -> None:
    """The CHT sync's turn (an advisory lock) asked of a server that has stopped answering
    (its backend process stopped, as a stalled machine or a half-dead network would leave it):
    the event loop goes on serving meanwhile, and the sync proceeds once the server answers."""
    import os
    import signal

    from smsbridge.cht.client import ChtClient
    from smsbridge.outbound.chtsync import SYNC_LOCK, ChtSync

    sim, cht_url = chtsim
    message_id = sim.add_outgoing("+254712345678", "Your results are ready")
    with open_store(url) as store:
        with store.exclusive(SYNC_LOCK) as held:  # opens the lock's own connection
            assert held
        [(pid,)] = store.query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE '%pg_advisory_unlock%' AND pid <> pg_backend_pid()"
        )
        loop_ran, resumed = threading.Event(), threading.Event()

        def resume() -> None:  # after the loop has run, or 15 s: the test then fails
            loop_ran.wait(15)
            resumed.set()
            os.kill(pid, signal.SIGCONT)

        async def play() -> None:
            async with ChtClient(cht_url, ("admin", "pass"), timeout=10) as cht:
                syncing = ChtSync(store, cht, interval=30, ttl=86400)
                step = asyncio.create_task(syncing.step(T0))
                await asyncio.sleep(0.5)
                served_meanwhile = not resumed.is_set()
                loop_ran.set()
                assert served_meanwhile, "the event loop stood still while the sync waited"
                await step

        os.kill(pid, signal.SIGSTOP)
        resumer = threading.Thread(target=resume, daemon=True)
        resumer.start()
        try:
            asyncio.run(play())
        finally:
            loop_ran.set()
            resumer.join(20)
        assert outgoing.get(store, message_id) is not None  # the exchange took place after


# -- errors: 503, never 500, and nothing of the row in them ---------------------------------------


def test_a_connection_lost_under_a_batch_or_a_short_transaction_is_a_503(url: str) -> None:
    """pg_terminate_backend stands for a server restart or a failover: the writer's job (here
    one using executemany, as the webhooks do) and a rate bucket's short transaction both
    end in DatabaseUnavailable (503 with Retry-After), never in a raw driver error (500)."""
    import psycopg

    from smsbridge.postgres.connection import DatabaseUnavailable
    from smsbridge.postgres.store import PgStore

    def kill(pid: int) -> None:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    with open_store(url) as store:
        assert isinstance(store, PgStore)

        def job(conn: Any) -> None:
            kill(conn.raw.info.backend_pid)
            conn.executemany(
                "INSERT INTO kv(key, value, updated_at) VALUES (?, ?, ?)", [("a", "b", T0)]
            )

        with pytest.raises(DatabaseUnavailable):
            store.submit(job).result(30)
        store.transact(lambda c: c.execute("SELECT 1").fetchone())
        kill(store._local.side.raw.info.backend_pid)
        with pytest.raises(DatabaseUnavailable):
            store.transact(lambda c: c.execute("SELECT 1").fetchone())
        assert store.transact(lambda c: c.execute("SELECT 2").fetchone())[0] == 2  # healed


def test_a_constraint_error_does_not_carry_the_rows_values(url: str) -> None:
    """PostgreSQL's DETAIL quotes the failing row (a number, an SMS's text) into whatever logs
    the error: only its first line is kept."""
    import psycopg

    with open_store(url) as store:

        def broken(conn: Any) -> None:  # a bug: a column left out
            conn.execute(
                "INSERT INTO outgoing(ref, origin, to_number, content, text_key, segments, "
                "encoding, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ("d-1", "cht", "+254712345678", "my HIV test result", "k", 1, "gsm7", T0, T0),
            )

        with pytest.raises(psycopg.IntegrityError) as refused:
            store.submit(broken).result(30)
        said = f"{refused.value} {refused.value!r}"
        assert "HIV" not in said and "254712345678" not in said
        assert 'column "state"' in str(refused.value)


# -- a URL, its password, and the CLI --------------------------------------------------------------


def test_no_database_password_is_printed_whatever_the_url(
    cli_database: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """A raw `%` in the password (libpq refuses the URL and quotes it), a password in the query
    string, several hosts with ports (README's failover form): check-config masks them all
    and exits 2 with a message, never a traceback."""
    from smsbridge.cli.main import main
    from smsbridge.logs import secrets_of

    bad = "postgresql://sms:se%zzcret@127.0.0.1:9/sms"
    monkeypatch.setenv("SMSBRIDGE_DATABASE", bad)
    assert main(["check-config"]) == 2
    printed = capsys.readouterr()
    assert "zzcret" not in printed.out + printed.err
    assert "SMSBRIDGE_DATABASE: cannot connect" in printed.out
    for url, shown in [
        (
            "postgresql://sms@127.0.0.1:9/sms?password=topsecret&sslmode=disable",
            "postgresql://sms:****@127.0.0.1:9/sms?sslmode=disable",
        ),
        (
            "postgresql://sms:s3cret@127.0.0.1:9,127.0.0.2:8/sms?target_session_attrs=read-write",
            "postgresql://sms:****@127.0.0.1:9,127.0.0.2:8/sms?target_session_attrs=read-write",
        ),
    ]:
        monkeypatch.setenv("SMSBRIDGE_DATABASE", url)
        assert main(["check-config", "--json"]) == 2  # nothing listens there
        printed = capsys.readouterr()
        assert "topsecret" not in printed.out + printed.err
        assert "s3cret" not in printed.out + printed.err
        rows = {row["setting"]: row["value"] for row in json.loads(printed.out)["settings"]}
        assert rows["SMSBRIDGE_DATABASE"] == shown
    for url, password in [
        (bad, "se%zzcret"),
        ("postgresql://db/sms?password=topsecret", "topsecret"),
    ]:
        assert password in secrets_of(Settings.from_env({"SMSBRIDGE_DATABASE": url}))


def test_migrate_store_never_prints_the_targets_password(cli_database: Path, capsys: Any) -> None:
    from smsbridge.cli.main import main

    with Store(cli_database):
        pass
    for target in (
        "postgresql://sms:se%zzcret@127.0.0.1:9/sms",
        "postgresql://sms@127.0.0.1:9/sms?password=topsecret",
    ):
        assert main(["migrate-store", "--to", target, "--from", str(cli_database)]) == 2
        printed = capsys.readouterr()
        assert "zzcret" not in printed.err and "topsecret" not in printed.err
        assert (
            "--to: cannot connect to PostgreSQL postgresql://sms:****@127.0.0.1:9/sms"
            in printed.err
        )
