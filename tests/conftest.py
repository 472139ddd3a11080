"""Shared test fixtures. Every test is offline: a connection to a non-loopback address fails."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from smsbridge.carriersim import CarrierSim
from smsbridge.chtsim import ChtSim, running_chtsim
from smsbridge.chtsim.demo_data import GATEWAY_USER
from smsbridge.chtsim.sim import SimSwitch
from tests.fakeclock import FakeClock
from tests.postgres import pg_database, pg_server  # noqa: F401 (fixtures for every module)

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_loopback(address: object) -> None:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            if host != "localhost":
                raise AssertionError(f"test tried to reach a non-loopback host: {host}") from None
            return
        if not ip.is_loopback:
            raise AssertionError(f"test tried to reach a non-loopback address: {host}")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check_loopback(address)
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check_loopback(address)
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


# -- the database: SQLite, and PostgreSQL for the modules that concern storage -------------------

# These modules run twice, on SQLite and on PostgreSQL (tests/postgres.py's server): everything
# in them that opens a store or a bridge uses the `database` fixture or `running_bridge`, which
# give the module's backend. A test that only makes sense on one engine says so with
# `only_on(backend, "sqlite", why)`.
POSTGRES_MODULES = (
    "test_store.py",
    "test_tasks.py",
    "test_retention.py",
    "test_group_commit.py",
    "inbound/",
    "outbound/",
)
# ... but not these, which store nothing of their own (routing and rates decided in memory)
SQLITE_ONLY_MODULES = ("outbound/test_routing", "outbound/test_ratelimit.py")
_backend = {"name": "sqlite"}  # the current module's backend, for `new_database`


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    where = metafunc.definition.path.relative_to(Path(__file__).parent).as_posix()
    on_both = where.startswith(POSTGRES_MODULES) and not where.startswith(SQLITE_ONLY_MODULES)
    if "backend" in metafunc.fixturenames and on_both:
        metafunc.parametrize("backend", ["sqlite", "postgresql"], indirect=True, scope="module")


@pytest.fixture(scope="module", autouse=True)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The module's database engine: "sqlite", or "postgresql" in the second run of the
    POSTGRES_MODULES (skipped locally, failed with CI set, when no server can start)."""
    from tests.postgres import require

    name = getattr(request, "param", "sqlite")
    if name == "postgresql":
        require()
    _backend["name"] = name
    try:
        yield name
    finally:
        _backend["name"] = "sqlite"


def new_database(directory: Path, name: str = "bridge.db") -> Path | str:
    """A new, empty database of the current backend: a file in `directory`, or the URL of a new
    PostgreSQL database."""
    if _backend["name"] == "postgresql":
        from tests import pgpool

        return pgpool.take(str(directory / name))
    return directory / name


@pytest.fixture(autouse=True)
def _recycle_databases(backend: str) -> Iterator[None]:
    """PostgreSQL databases a test took go back to the pool, emptied (tests/pgpool.py)."""
    yield
    if backend == "postgresql":
        from tests import pgpool

        pgpool.recycle()


@pytest.fixture
def database(tmp_path: Path, backend: str) -> Path | str:
    """SMSBRIDGE_DATABASE for this test: an SQLite file in tmp_path, or a fresh PostgreSQL
    database's URL (module backend "postgresql")."""
    return new_database(tmp_path)


def _refusals() -> tuple[type[Exception], ...]:
    import sqlite3

    try:
        from psycopg.errors import RaiseException
    except ImportError:  # no PostgreSQL here: its tests skip
        return (sqlite3.IntegrityError,)
    return (sqlite3.IntegrityError, RaiseException)


CRASHED = _refusals()  # what a write refused by `inject_crash` raises, on either engine


def inject_crash(
    store: Any, table: str, when: str, *, on: str = "UPDATE OF state"
) -> Callable[[], None]:
    """Make the database refuse an UPDATE of `table`'s `state` (or the statement `on` names:
    `INSERT`) where `when` holds (SQL on OLD and NEW), as a crash between two commits would:
    a trigger raising "injected crash" (one of CRASHED), on either engine. Returns what
    lifts it."""
    if store.dialect == "postgresql":
        store.write_sync(
            lambda c: c.execute(
                "CREATE OR REPLACE FUNCTION injected_crash() RETURNS trigger LANGUAGE plpgsql "
                "AS $$ BEGIN RAISE EXCEPTION 'injected crash'; END $$"
            )
        )
        create = (
            f"CREATE TRIGGER crash BEFORE {on} ON {table} FOR EACH ROW "
            f"WHEN ({when}) EXECUTE FUNCTION injected_crash()"
        )
        lift = f"DROP TRIGGER crash ON {table}"
    else:
        create = (
            f"CREATE TRIGGER crash BEFORE {on} ON {table} WHEN {when} "
            "BEGIN SELECT RAISE(ABORT, 'injected crash'); END"
        )
        lift = "DROP TRIGGER crash"
    store.write_sync(lambda c: c.execute(create))
    return lambda: store.write_sync(lambda c: c.execute(lift))


def only_on(backend: str, engine: str, why: str) -> None:
    """Skip the test unless the module runs on `engine` (what it checks exists only there)."""
    if backend != engine:
        pytest.skip(f"{engine} only: {why}")


# -- INBOUND: a running bridge (the app under uvicorn on 127.0.0.1, its store, a fake clock) ---


WEBHOOK_TOKENS = {
    "africastalking": "at-token-0123456789",
    "twilio": "tw-token-0123456789",
    "vonage": "vn-token-0123456789",
    "generic": "gn-token-0123456789",
    "kannel": "kn-token-0123456789",
    "rapidpro": "rp-token-0123456789",
}


@dataclass
class RunningBridge:
    url: str
    app: Any
    store: Any
    settings: Any
    clock: FakeClock
    http: Any = None  # an httpx.Client on `url` (one per bridge: clients are costly to make)
    extra: dict[str, Any] = field(default_factory=dict)

    def inbound_path(self, carrier: str) -> str:
        return f"/carriers/{carrier}/{WEBHOOK_TOKENS[carrier]}/inbound"

    def messages(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.store.query("SELECT * FROM messages ORDER BY id")]

    @property
    def service(self) -> Any:
        return self.app.state.service


def bridge_env(tmp_path: Path, cht_url: str, **env: str) -> dict[str, str]:
    database = env.get("SMSBRIDGE_DATABASE") or str(new_database(tmp_path))  # the backend's
    values = {
        "SMSBRIDGE_DATABASE": database,
        "SMSBRIDGE_CHT_URL": cht_url,
        "SMSBRIDGE_CARRIERS": "africastalking,twilio,vonage,generic,kannel,rapidpro",
        "SMSBRIDGE_PUBLIC_URL": "https://sms.example.org",
        "SMSBRIDGE_TWILIO_AUTH_TOKEN": "12345abcdef",
        **{f"SMSBRIDGE_{c.upper()}_WEBHOOK_TOKEN": t for c, t in WEBHOOK_TOKENS.items()},
    }
    values.update(env)
    return values


@contextlib.contextmanager
def running_bridge(
    tmp_path: Path,
    *,
    cht_url: str = "http://127.0.0.1:9",
    clock: FakeClock | None = None,
    start_workers: bool = False,
    **env: str,
) -> Iterator[RunningBridge]:
    """The bridge app under uvicorn with its own store. Workers are off unless asked for."""
    import httpx

    from smsbridge.carriers import load_settings
    from smsbridge.loopback import serve_in_thread
    from smsbridge.store import open_store
    from smsbridge.web.app import create_app

    settings = load_settings(bridge_env(tmp_path, cht_url, **env))
    clock = clock or FakeClock()
    store = open_store(settings.database)
    app = create_app(settings, clock=clock, store=store, start_workers=start_workers, idle=0.02)
    try:
        with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as http:
            yield RunningBridge(url, app, store, settings, clock, http)
    finally:
        store.close()


@pytest.fixture
def bridge_factory(tmp_path: Path) -> Iterator[Callable[..., RunningBridge]]:
    """Start bridges (each in its own directory); all stopped at the end of the test."""
    with contextlib.ExitStack() as stack:
        counter = iter(range(1000))

        def start(**kwargs: Any) -> RunningBridge:
            directory = tmp_path / f"bridge{next(counter)}"
            directory.mkdir()
            return stack.enter_context(running_bridge(directory, **kwargs))

        yield start


@pytest.fixture(scope="module")
def _shared_bridge(
    tmp_path_factory: pytest.TempPathFactory, backend: str
) -> Iterator[RunningBridge]:
    with running_bridge(tmp_path_factory.mktemp("bridge")) as running:
        yield running


@pytest.fixture
def bridge(_shared_bridge: RunningBridge) -> RunningBridge:
    """A bridge accepting webhooks from every carrier (workers off: nothing is submitted).
    One server per test module, emptied and its clock reset before each test."""

    def empty(conn: Any) -> None:
        for table in ("tasks", "messages", "inbound_parts"):
            conn.execute(f"DELETE FROM {table}")

    _shared_bridge.store.write_sync(empty)
    _shared_bridge.clock.now = FakeClock().now
    return _shared_bridge


# -- the carrier simulator (send-side tests) ------------------------------------------------------


@pytest.fixture(scope="module")
def carriers() -> Iterator[tuple[CarrierSim, str]]:
    """The carrier simulator served on 127.0.0.1: `(sim, url)`, one per test module."""
    from smsbridge.loopback import serve_in_thread

    sim = CarrierSim()
    with serve_in_thread(sim.app) as url:
        yield sim, url


@pytest.fixture
def sim(carriers: tuple[CarrierSim, str]) -> CarrierSim:
    """`carriers`' simulator as new (nothing sent, no fault or outage), posting no delivery
    reports: the tests hand the pipeline the reports they want, when they want."""
    carriers[0].reset(reports=False)
    return carriers[0]


# -- the CHT simulator (CHTSIM) -------------------------------------------------------------------


@pytest.fixture(scope="session")
def _chtsim_server() -> Iterator[tuple[SimSwitch, str]]:
    from smsbridge.loopback import serve_in_thread

    switch = SimSwitch()
    with serve_in_thread(switch) as url:
        yield switch, url


@pytest.fixture
def chtsim(_chtsim_server: tuple[SimSwitch, str]) -> Iterator[tuple[ChtSim, str]]:
    """A fresh CHT simulator served on 127.0.0.1:<port>: `(sim, url)`. Admin `admin:pass`;
    `sim.add_user(...)`, `sim.set_forms(...)`, `sim.faults...` to set it up (smsbridge.chtsim).
    One server per session; each test gets its own `ChtSim` behind it."""
    switch, url = _chtsim_server
    sim = ChtSim()
    switch.sim = sim
    try:
        yield sim, url
    finally:
        sim.faults.clear()  # releases requests held by a timeout fault


@pytest.fixture
def demo_sim() -> ChtSim:
    """A CHT simulator holding the demo deployment (forms P, V, D; CHWs; the gateway user)."""
    sim = ChtSim()
    sim.install_demo()
    return sim


@pytest.fixture
def demo_cht_url(demo_sim: ChtSim) -> Iterator[str]:
    """`demo_sim` served on 127.0.0.1 (a server of its own), as a URL carrying the gateway
    user's credentials: what SMSBRIDGE_CHT_URL is set to."""
    with running_chtsim(demo_sim) as url:
        user, password = GATEWAY_USER
        yield url.replace("http://", f"http://{user}:{password}@")


# -- the CLI: an environment of its own -----------------------------------------------------------


@pytest.fixture
def cli_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SMSBRIDGE_* variable from the caller's environment, and SMSBRIDGE_DATABASE set to a
    (not yet created) file in tmp_path, whose path is returned."""
    for name in list(os.environ):
        if name.startswith("SMSBRIDGE_"):
            monkeypatch.delenv(name)
    path = tmp_path / "bridge.db"
    monkeypatch.setenv("SMSBRIDGE_DATABASE", str(path))
    return path


# -- a cht-gateway phone, end to end (OPS: the logs and metrics of the phone path) ---------------

PHONE_PATIENT = "+254799000111"  # sends an SMS to the phone's SIM
PHONE_CHW = "+254712000222"  # gets CHT's reminder through the phone
PHONE_TEXTS = ("Hello from the clinic queue", "Reminder: clinic visit tomorrow")
PHONE_LAG = 30.0  # bridge-clock seconds between the phone's SENT and DELIVERED reports


@pytest.fixture
def gateway_phone_bridge(tmp_path: Path, chtsim: tuple[ChtSim, str]) -> Iterator[RunningBridge]:
    """A bridge (workers on) whose only channel is the phone `phone1`, after the phone forwarded
    one SMS it got (twice: the repeat is a duplicate) and sent, then delivered, one SMS CHT
    queued, PHONE_LAG seconds (bridge clock) after sending it. `extra`: `message_id` (CHT's
    id of that SMS), `lag`, `texts`, `numbers`, `password` (what the logs must not show)."""
    from smsbridge.carriersim.phone import FakePhone
    from smsbridge.loopback import wait_for
    from smsbridge.outbound import messages as outgoing
    from smsbridge.sms import DeliveryState

    cht, cht_url = chtsim
    with running_bridge(
        tmp_path,
        cht_url=cht_url.replace("http://", "http://admin:pass@"),
        start_workers=True,
        SMSBRIDGE_CARRIERS="chtgateway",
        SMSBRIDGE_CHTGATEWAY_ACCOUNTS="phone1:phone-pass-1",
        SMSBRIDGE_ROUTES="*=chtgateway",
        SMSBRIDGE_SYNC_INTERVAL="0.05",
    ) as bridge:
        phone = FakePhone(bridge.url + "/api/sms", "phone1", "phone-pass-1")
        sms_id = phone.receive(PHONE_PATIENT, PHONE_TEXTS[0])
        phone.receive(PHONE_PATIENT, PHONE_TEXTS[0], sms_id=sms_id)  # forwarded twice
        message_id = cht.add_outgoing(PHONE_CHW, PHONE_TEXTS[1])

        def routed() -> bool:
            message = outgoing.get(bridge.store, message_id)
            return message is not None and message.channel is not None

        wait_for(routed, "the reminder routed to the phone", timeout=20)
        for _ in range(3):  # handed over and on the air; reported sending; reported sent
            phone.poll(bridge.http)
        bridge.clock.advance(PHONE_LAG)
        phone.poll(bridge.http)  # reported delivered
        message = outgoing.get(bridge.store, message_id)
        assert message is not None and message.state is DeliveryState.DELIVERED, message
        bridge.extra.update(
            message_id=message_id,
            lag=PHONE_LAG,
            texts=PHONE_TEXTS,
            numbers=(PHONE_PATIENT, PHONE_CHW),
            password="phone-pass-1",
        )
        yield bridge
