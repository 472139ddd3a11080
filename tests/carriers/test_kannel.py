"""Kannel: the webhook cases and the send side against the carrier simulator (harness), then the
real thing: Debian's bearerbox and smsbox, run with deploy/kannel/kannel.conf (only ports,
secrets, paths and the bridge's URL changed), with Kannel's own test SMSCs: `fakesmsc`, and
`drive_smpp` for a real SMPP hop. SMS injected at the SMSC become reports in the CHT simulator;
SMS CHT wants sent reach the SMSC through sendsms, and Kannel's dlr-url reports move their
states in CHT."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from smsbridge.carriers import load_settings
from smsbridge.carriers.base import CarrierConfig
from smsbridge.carriers.kannel import dlr_url
from smsbridge.chtsim import ChtSim
from smsbridge.loopback import free_port, serve_in_thread, wait_for
from smsbridge.sms import DeliveryState, StatusUpdate
from smsbridge.store import Store
from smsbridge.web.app import create_app
from tests.carriers.harness import (
    ARRIVAL,
    Case,
    Sign,
    incoming_tests,
    query_request,
    sending_tests,
)
from tests.conftest import RunningBridge
from tests.debian import program
from tests.fakeclock import FakeClock

CONF = Path(__file__).resolve().parents[2] / "deploy" / "kannel" / "kannel.conf"
ACCEPTED = ""  # smsbox wants no reply SMS: an empty 200


def stored(sender: str, text: str, external_id: str | None, received: int | str) -> list[dict]:
    return [{"sender": sender, "text": text, "external_id": external_id, "received_at": received}]


def kannel_query(text: bytes, charset: str, **fields: str) -> str:
    """A get-url query as smsbox builds it (the text's bytes %-escaped)."""
    rest = urllib.parse.urlencode(fields)
    return f"text={urllib.parse.quote_from_bytes(text)}&charset={charset}&{rest}"


NEPALI = "नेपाल 😀"


@dataclass(frozen=True)
class RawCase(Case):
    """A get-url call whose query string is sent as written (httpx would re-encode `params`
    as UTF-8)."""

    raw_query: str = ""

    def send(self, bridge: RunningBridge, path: str, sign: Sign | None = None) -> httpx.Response:
        return bridge.http.get(f"{path}?{self.raw_query}")


CASES = [
    Case(
        "get-url, UTF-8 (mo-recode)",
        method="GET",
        params={
            "from": "+254712345678",
            "to": "5000",
            "text": "P 12 Jane",
            "id": "c396ca66-06e2-420f-a60f-76a0f8f8018a",
            "time": "1700000000",
            "charset": "UTF-8",
            "smsc": "fake",
        },
        reply=ACCEPTED,
        stored=stored(
            "+254712345678", "P 12 Jane", "c396ca66-06e2-420f-a60f-76a0f8f8018a", 1700000000000
        ),
    ),
    RawCase(
        "get-url, UCS-2 without mo-recode",
        method="GET",
        raw_query=kannel_query(
            NEPALI.encode("utf-16-be"), "UTF-16BE", **{"from": "+254712345678", "id": "k-2"}
        ),
        stored=stored("+254712345678", NEPALI, "k-2", ARRIVAL),
    ),
    RawCase(
        "get-url, ISO-8859-1",
        method="GET",
        raw_query=kannel_query(
            "café".encode("latin-1"), "ISO-8859-1", **{"from": "+254712345678", "id": "k-3"}
        ),
        stored=stored("+254712345678", "café", "k-3", ARRIVAL),
    ),
    Case(
        "form POST with the same fields",
        data={"from": "+254712345678", "text": "hello", "id": "k-4"},
        stored=stored("+254712345678", "hello", "k-4", ARRIVAL),
    ),
    Case("no sender is 400", method="GET", params={"text": "x"}, status=400, stored=()),
    RawCase(
        "text not valid in its charset is 400",
        method="GET",
        raw_query=kannel_query(b"\xd8", "UTF-16BE", **{"from": "+254712345678"}),
        status=400,
        stored=(),
    ),
]

TestIncoming = incoming_tests("kannel", CASES)


# -- the send side against the simulator; parse_status ----------------------------------------

STATUS_CASES = [
    (
        query_request("ref=m-1&type=8&reply=ACK%2F&smsc_id="),
        StatusUpdate("kannel", "m-1", DeliveryState.SENT, carrier_status="8", ref="m-1"),
    ),
    (
        query_request("ref=m-1&type=1&reply=&smsc_id=84f57c82"),
        StatusUpdate("kannel", "m-1", DeliveryState.DELIVERED, carrier_status="1", ref="m-1"),
    ),
    (
        query_request("ref=m-1&type=16&reply=NACK%2F0x0000000b%2FInvalid+Destination"),
        StatusUpdate(
            "kannel",
            "m-1",
            DeliveryState.FAILED,
            reason="NACK/0x0000000b/Invalid Destination",
            carrier_status="16",
            ref="m-1",
        ),
    ),
    (
        query_request("ref=m-1&type=2"),
        StatusUpdate(
            "kannel",
            "m-1",
            DeliveryState.FAILED,
            reason="non-delivered",
            carrier_status="2",
            ref="m-1",
        ),
    ),
    (query_request("ref=m-1&type=32"), None),  # an intermediate report we do not map
]

TestSending = sending_tests(
    "kannel",
    bad_credentials={"password": "wrong"},
    missing_settings=[
        ({"sendsms_url": ""}, "SMSBRIDGE_KANNEL_SENDSMS_URL"),
        ({"password": ""}, "SMSBRIDGE_KANNEL_PASSWORD"),
    ],
    status_cases=STATUS_CASES,
    # smsbox's 503 "Temporal failure, try again later." is bearerbox refusing for now (its
    # queue full, or no SMSC to take the SMS): a transient failure the breaker counts, not a
    # rate limit Kannel documents (carriers/kannel.py ERRORS)
    throttles=False,
)


def test_dlr_url_doubles_our_percent_signs_and_asks_kannels_escapes() -> None:
    config = CarrierConfig("kannel", {"webhook_token": "t/k"}, "https://sms.example.org")
    url = dlr_url(config, "réf 1")
    assert url == (
        "https://sms.example.org/carriers/kannel/t%%2Fk/status?ref=r%%C3%%A9f%%201"
        "&type=%d&reply=%A&smsc_id=%F"
    )
    assert dlr_url(CarrierConfig("kannel", {}, ""), "x") == ""  # no public URL: no reports


# -- the real Kannel ---------------------------------------------------------------------------

WEBHOOK_TOKEN = "kannel-hook-0123456789"
SENDSMS_PASSWORD = "sendsms-pass-0123456789"
ADMIN_PASSWORD = "admin-pass-0123456789"
DRIVE_SMPP_BOX_PORT = 13001  # drive_smpp connects to bearerbox's smsbox port here, fixed
DELIVERED_HISTORY = [
    "pending",
    "forwarded-to-gateway",
    "received-by-gateway",
    "forwarded-by-gateway",
    "sent",
    "delivered",
]


def setting(conf: str, key: str, value: str) -> str:
    """`conf` with every (uncommented) `key = ...` line set to `value`."""
    pattern = re.compile(rf"^{re.escape(key)} = .*$", re.MULTILINE)
    assert pattern.search(conf), f"{key} is not in {CONF}"
    return pattern.sub(lambda _m: f"{key} = {value}", conf)


def block(conf: str, name: str) -> tuple[int, int]:
    start = conf.index(f"# --- {name}: begin ---\n")
    end = conf.index(f"# --- {name}: end ---\n")
    return start, end


def smpp_groups(conf: str, port: int) -> str:
    """The shipped SMPP example, uncommented and pointed at drive_smpp on `port`."""
    start, end = block(conf, "SMPP")
    lines = conf[start:end].splitlines()[1:]
    text = "\n".join(line[1:] if line.startswith("#") else line for line in lines) + "\n"
    text = text.replace("smpp.operator.example", "127.0.0.1")
    text = re.sub(r"^(receive-)?port = 2775$", rf"\g<1>port = {port}", text, flags=re.M)
    return text.replace("CHANGE-ME-SYSTEM-ID", "smsbridge").replace(
        "CHANGE-ME-SMPP-PASSWORD", "smpp-pass"
    )


@dataclass
class Kannel:
    directory: Path
    sendsms_url: str
    smsc_port: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def log(self, name: str) -> str:
        path = self.directory / name
        return path.read_text("utf-8", "replace") if path.exists() else ""

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        out = (self.directory / f"{name}.out").open("wb")
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.directory)
        out.close()
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def listening(port: int) -> bool:
    """Someone listens on 127.0.0.1:`port` (read from /proc: connecting would be noticed)."""
    wanted = f":{port:04X} "
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(wanted in row.split(None, 3)[1] + " " and row.split()[3] == "0A" for row in rows):
            return True
    return False


@contextmanager
def kannel(
    tmp_path: Path, bridge_url: str, sendsms: int, *, smpp_port: int | None = None
) -> Iterator[Kannel]:
    """bearerbox and smsbox with the shipped kannel.conf, sendsms on port `sendsms`; its SMSC
    the fake one, or with `smpp_port` the SMPP groups pointed at drive_smpp there."""
    bearerbox = program("/usr/sbin/bearerbox", "kannel")
    smsbox = program("/usr/sbin/smsbox", "kannel")
    admin, box, fake = (free_port() for _ in range(3))
    conf = CONF.read_text()
    if smpp_port is not None:
        start, end = block(conf, "SMSC")
        conf = conf[:start] + smpp_groups(conf, smpp_port) + conf[end:]
    else:
        conf = setting(conf, "port", str(fake))
    for key, value in (
        ("admin-port", str(admin)),
        ("smsbox-port", str(box)),
        ("bearerbox-port", str(box)),
        ("sendsms-port", str(sendsms)),
        ("admin-password", ADMIN_PASSWORD),
        ("password", SENDSMS_PASSWORD),
        ("store-location", f'"{tmp_path / "kannel.store"}"'),
        ("log-level", "0"),
    ):
        conf = setting(conf, key, value)
    for key in ("log-file", "access-log"):
        conf = re.sub(
            rf'^{key} = "/var/log/kannel/(\w+)\.log"$',
            lambda m, k=key: f'{k} = "{tmp_path / (m.group(1) + ".log")}"',
            conf,
            flags=re.M,
        )
    conf = conf.replace("https://sms.example.org", bridge_url)
    conf = conf.replace("CHANGE-ME-WEBHOOK-TOKEN", WEBHOOK_TOKEN)
    active = [line for line in conf.splitlines() if not line.startswith("#")]
    assert not [line for line in active if "CHANGE-ME" in line or "/var/" in line], conf
    (tmp_path / "kannel.conf").write_text(conf)
    world = Kannel(tmp_path, f"http://127.0.0.1:{sendsms}/cgi-bin/sendsms", fake)
    try:
        world.start("bearerbox", bearerbox, "-v", "0", "kannel.conf")
        wait_for(lambda: listening(box), "bearerbox's smsbox port", timeout=20)
        world.start("smsbox", smsbox, "-v", "0", "kannel.conf")
        wait_for(lambda: listening(sendsms), "smsbox's sendsms port", timeout=20)
        yield world
    finally:
        for process in reversed(world.processes):
            world.stop(process)


@dataclass
class Bridge:
    url: str
    store: Store


@contextmanager
def bridge(tmp_path: Path, chtsim: tuple[ChtSim, str], sendsms_url: str) -> Iterator[Bridge]:
    """The bridge (workers on) whose only carrier is Kannel, on a port chosen beforehand so
    Kannel's get-url and dlr-url can name it."""
    _cht, cht_url = chtsim
    with ExitStack() as stack:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        settings = load_settings(
            {
                "SMSBRIDGE_DATABASE": str(tmp_path / "bridge.db"),
                "SMSBRIDGE_CHT_URL": cht_url.replace("http://", "http://admin:pass@"),
                "SMSBRIDGE_CARRIERS": "kannel",
                "SMSBRIDGE_ROUTES": "*=kannel",
                "SMSBRIDGE_PUBLIC_URL": url,
                "SMSBRIDGE_SYNC_INTERVAL": "0.05",
                "SMSBRIDGE_KANNEL_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
                "SMSBRIDGE_KANNEL_SENDSMS_URL": sendsms_url,
                "SMSBRIDGE_KANNEL_USERNAME": "smsbridge",
                "SMSBRIDGE_KANNEL_PASSWORD": SENDSMS_PASSWORD,
                "SMSBRIDGE_KANNEL_SENDER": "5000",
            }
        )
        store = Store(settings.database)
        stack.callback(store.close)
        app = create_app(settings, clock=FakeClock(1_800_000_000.0), store=store, idle=0.02)
        stack.enter_context(serve_in_thread(app, port=port))
        yield Bridge(url, store)


@pytest.fixture
def cht(chtsim: tuple[ChtSim, str]) -> ChtSim:
    chtsim[0].install_demo()
    return chtsim[0]


def incoming_texts(cht: ChtSim) -> list[tuple[str, str]]:
    """(sender, text) of every SMS CHT got (reports and plain messages)."""
    return [
        (str(r.get("from")), str((r.get("sms_message") or {}).get("message")))
        for r in cht.records()
    ]


def test_fakesmsc_mo_become_reports_and_mt_are_delivered_through_kannel(
    tmp_path: Path, chtsim: tuple[ChtSim, str], cht: ChtSim
) -> None:
    fakesmsc = program("/usr/lib/kannel/test/fakesmsc", "kannel-extras")
    sendsms_port = free_port()
    # the bridge must know smsbox's URL before Kannel starts, and Kannel the bridge's
    with ExitStack() as stack:
        bridge_dir, kannel_dir = tmp_path / "bridge", tmp_path / "kannel"
        bridge_dir.mkdir()
        kannel_dir.mkdir()
        sendsms_url = f"http://127.0.0.1:{sendsms_port}/cgi-bin/sendsms"
        world_bridge = stack.enter_context(bridge(bridge_dir, chtsim, sendsms_url))
        world = stack.enter_context(kannel(kannel_dir, world_bridge.url, sendsms_port))
        alice = "+254712345678"

        # a UCS-2 SMS (Nepali and an emoji), injected at the SMSC: relayed to CHT as written
        ucs2 = urllib.parse.quote_from_bytes(NEPALI.encode("utf-16-be"))
        first = world.start(
            "fakesmsc-1", fakesmsc, "-H", "127.0.0.1", "-r", str(world.smsc_port), "-m", "1",
            f"+254799000111 5000 ucs2 {ucs2}",
        )  # fmt: skip
        wait_for(lambda: ("+254799000111", NEPALI) in incoming_texts(cht), "the UCS-2 SMS in CHT")
        world.stop(first)

        # a CHW's report: a report in CHT; CHT's reply goes back out through Kannel
        phone = world.start(
            "fakesmsc-2", fakesmsc, "-H", "127.0.0.1", "-r", str(world.smsc_port), "-m", "1",
            f"{alice} 5000 text P 12 Jane",
        )  # fmt: skip
        [report] = wait_for(
            lambda: [r for r in cht.records() if r.get("form") == "P"], "the P report in CHT"
        )
        assert report["from"] == alice and report["fields"]["patient_name"] == "Jane"

        # SMS CHT wants sent: out through sendsms to the SMSC, delivered per Kannel's DLRs
        plain = cht.add_outgoing("+254700000001", "Visit the clinic tomorrow")
        unicode = cht.add_outgoing("+254700000002", "Habari 😀")
        for message_id in (plain, unicode):
            wait_for(lambda m=message_id: cht.states(m)[-1] == "delivered", "delivered in CHT")
            assert cht.states(message_id) == DELIVERED_HISTORY
        at_smsc = world.log("fakesmsc-2.out")
        assert "<5000 +254700000001 text Visit the clinic tomorrow>" in at_smsc
        ucs2_text = urllib.parse.quote_plus("Habari 😀".encode("utf-16-be"))
        assert f"<5000 +254700000002 ucs-2 {ucs2_text}>" in at_smsc
        # CHT's auto-reply to the report went out too
        assert f"<5000 {alice} text Thank you" in at_smsc
        world.stop(phone)


def test_smpp_through_drive_smpp(tmp_path: Path, chtsim: tuple[ChtSim, str], cht: ChtSim) -> None:
    """bearerbox binds over SMPP (transmitter and receiver, the shipped SMPP groups) to
    drive_smpp, Kannel's own SMPP test SMSC: the SMS it delivers (texts "1", "2" from 456) reach
    CHT; an SMS CHT wants sent goes out as an SMPP submit_sm, and the SMSC's submit_sm_resp
    comes back as Kannel's DLR type 8 (sent).

    drive_smpp delivers its SMS once, as soon as bearerbox binds as a receiver, and never again.
    bearerbox binds its SMSC connections at once but keeps them stopped until its start-up is
    done, and an SMS delivered meanwhile gets a temporary error (deliver_sm_resp status 0x64,
    ESME_RX_T_APPN) that a real SMSC redelivers after and drive_smpp does not: the SMS were
    lost whenever drive_smpp was quicker than bearerbox's start-up. So drive_smpp starts only
    once bearerbox is up ("Start-up done" in its log); bearerbox, its first binds refused,
    binds again after its reconnect delay (`reconnect-delay`, 10 s)."""
    drive_smpp = program("/usr/lib/kannel/test/drive_smpp", "kannel-extras")
    with ExitStack() as stack:
        # drive_smpp also connects to 127.0.0.1:13001 as an smsbox and exits when it cannot:
        # this socket holds that connection (bearerbox's own box port is a free one)
        holder = socket.socket()
        stack.callback(holder.close)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            holder.bind(("127.0.0.1", DRIVE_SMPP_BOX_PORT))
        except OSError:
            pytest.fail(f"port {DRIVE_SMPP_BOX_PORT} is taken: drive_smpp needs it")
        holder.listen()
        bridge_dir, kannel_dir = tmp_path / "bridge", tmp_path / "kannel"
        bridge_dir.mkdir()
        kannel_dir.mkdir()
        sendsms_port, smpp_port = free_port(), free_port()
        sendsms_url = f"http://127.0.0.1:{sendsms_port}/cgi-bin/sendsms"
        world_bridge = stack.enter_context(bridge(bridge_dir, chtsim, sendsms_url))
        world = stack.enter_context(
            kannel(kannel_dir, world_bridge.url, sendsms_port, smpp_port=smpp_port)
        )
        wait_for(
            lambda: "MAIN: Start-up done" in world.log("bearerbox.log"), "bearerbox up", timeout=20
        )
        with (kannel_dir / "drive_smpp.out").open("wb") as out:
            smsc = subprocess.Popen(
                [drive_smpp, "-v", "0", "-p", str(smpp_port), "-m", "2"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=kannel_dir,
            )
        stack.callback(lambda: (smsc.kill(), smsc.wait(5)))

        def smsc_log() -> str:
            return (kannel_dir / "drive_smpp.out").read_text("utf-8", "replace")

        # bearerbox's binds were refused until now: it retries after its reconnect delay (10 s)
        wait_for(
            lambda: {("456", "1"), ("456", "2")} <= set(incoming_texts(cht)),
            "drive_smpp's SMS in CHT",
            timeout=40,
        )
        message_id = cht.add_outgoing("+254700000003", "Habari SMPP")
        wait_for(lambda: "submit_sm: short_message = <Habari SMPP>" in smsc_log(), "submit_sm")
        wait_for(lambda: cht.states(message_id)[-1] == "sent", "sent in CHT (DLR type 8)")
        assert "All messages sent to ESME." in smsc_log()
        assert "smpp" in world.log("bearerbox.log").lower()


@pytest.mark.parametrize(("mask", "problems"), [("31", 0), ("0", 0), ("32", 1), ("all", 1)])
def test_check_config_wants_a_dlr_mask_kannel_takes(mask: str, problems: int) -> None:
    from smsbridge.carriers.kannel import CARRIER

    found, _warnings = CARRIER.check(CarrierConfig("kannel", {"dlr_mask": mask}))
    assert len(found) == problems and all("SMSBRIDGE_KANNEL_DLR_MASK" in p for p in found)
