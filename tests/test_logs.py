"""Logs: key=value lines, phone numbers masked, secrets and SMS text never at INFO or above."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smsbridge.carriers import load_settings
from smsbridge.logs import RedactionFilter, event, secrets_of, setup

_TOUCHED = ("", "smsbridge", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`setup` configures process-wide loggers: put them back for the other tests."""
    saved = {
        name: (lg.level, lg.propagate, list(lg.handlers))
        for name in _TOUCHED
        for lg in [logging.getLogger(name)]
    }
    yield
    for name, (level, propagate, handlers) in saved.items():
        lg = logging.getLogger(name)
        lg.setLevel(level)
        lg.propagate = propagate
        lg.handlers[:] = handlers


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = setup("DEBUG", secrets=["s3cr3t-token-value"], stream=stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def test_event_writes_one_key_value_line(captured: io.StringIO) -> None:
    log = logging.getLogger("smsbridge.test")
    event(log, "outbound.state", id=42, state="sent", reason="carrier said no")
    line = captured.getvalue().strip()
    assert "\n" not in line
    assert line.startswith("ts=")
    assert " level=info logger=smsbridge.test event=outbound.state id=42 state=sent " in line
    assert line.endswith('reason="carrier said no"')


def test_event_lines_are_spelled_exactly(captured: io.StringIO) -> None:
    """What `event` writes, to the character (its hot path is tuned: smsbridge/logs.py):
    `from_` spelled `from`, phone keys masked at INFO and kept at DEBUG, values of any type,
    quoting and escapes, a traceback."""
    log = logging.getLogger("smsbridge.test")
    fields = {"from_": "+254712345678", "n": 3, "none": None, "ok": True, "text": 'a "b"\n'}
    event(log, "spelled", **fields)
    event(log, "spelled", logging.DEBUG, **fields)
    try:
        raise ValueError("boom")
    except ValueError:
        event(log, "failed", logging.ERROR, exc_info=True, to="", why="x=y")
    lines = [
        line.split(" logger=smsbridge.test ", 1)[1] for line in captured.getvalue().splitlines()
    ]
    assert lines[:2] == [
        'event=spelled from=+2547*****678 n=3 none=None ok=True text="a \\"b\\"\\n"',
        'event=spelled from=+254712345678 n=3 none=None ok=True text="a \\"b\\"\\n"',
    ]
    assert lines[2].startswith('event=failed to="" why="x=y" exc="Traceback ')
    assert "ValueError: boom" in lines[2]


def test_event_masks_phone_keys(captured: io.StringIO) -> None:
    event(logging.getLogger("smsbridge.test"), "inbound.stored", sender="+254712345678", to="2547")
    text = captured.getvalue()
    assert "+254712345678" not in text
    assert "sender=+2547" in text and "678" in text


@pytest.mark.parametrize(
    "message",
    [
        "relayed from +254712345678",
        "relayed from +254 712 345 678",
        "vonage msisdn 254712345678 said hello",
        "local number 0712345678",
        "local number 0712 345 678",
    ],
)
def test_the_filter_masks_anything_like_a_phone_at_info(
    captured: io.StringIO, message: str
) -> None:
    logging.getLogger("smsbridge.test").info(message)
    digits = "".join(c for c in message.split("from ")[-1] if c.isdigit())
    out = "".join(c for c in captured.getvalue() if c.isdigit() or c == "\n")
    assert digits[-9:] not in out


def test_the_filter_keeps_phones_at_debug(captured: io.StringIO) -> None:
    logging.getLogger("smsbridge.test").debug("lookup %s", "+254712345678")
    assert "+254712345678" in captured.getvalue()


def test_ids_counts_and_times_are_not_taken_for_phones() -> None:
    redact = RedactionFilter().redact
    for text in [
        "id=01890a5d-ac96-774b-bcce-b302099a8057",
        "id=12345678-ac96-774b-bcce-b302099a8057",
        "count=3 latency=0.125 port=5988",
        "ts=2026-11-27T23:14:56.123Z",
        "version 1.2.12345678",
    ]:
        assert redact(text) == text


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("calling http://gw:pa55word@cht.local:5988/api/sms", "pa55word"),
        ("header Authorization: Basic Z3c6cGE1NXdvcmQ=", "Z3c6cGE1NXdvcmQ="),
        ("POST /carriers/twilio/tok3n-abc/inbound 200", "tok3n-abc"),
        ("webhook ?key=atsecret123&x=1", "atsecret123"),
        ("configured secret s3cr3t-token-value in use", "s3cr3t-token-value"),
    ],
)
def test_the_filter_removes_secrets_at_every_level(
    captured: io.StringIO, message: str, secret: str
) -> None:
    logging.getLogger("smsbridge.test").debug(message)
    logging.getLogger("smsbridge.test").warning(message)
    text = captured.getvalue()
    assert text.count("****") >= 2
    assert secret not in text


def test_secrets_in_arguments_and_tracebacks_are_removed(captured: io.StringIO) -> None:
    log = logging.getLogger("smsbridge.test")
    try:
        raise RuntimeError("connect to http://gw:tracepass@cht:5988 failed for +254712345678")
    except RuntimeError:
        log.exception("sync failed for %s", "s3cr3t-token-value")
    text = captured.getvalue()
    assert "tracepass" not in text
    assert "s3cr3t-token-value" not in text
    assert "+254712345678" not in text
    assert "RuntimeError" in text


def test_uvicorn_records_pass_through_the_same_filter(captured: io.StringIO) -> None:
    logging.getLogger("uvicorn.access").info(
        '127.0.0.1:5000 - "POST /carriers/africastalking/at-token-1/inbound HTTP/1.1" 200'
    )
    text = captured.getvalue()
    assert "at-token-1" not in text
    assert "/carriers/africastalking/****/inbound" in text


def test_secrets_of_settings_lists_passwords() -> None:
    settings = load_settings({"SMSBRIDGE_CHT_URL": "http://gw:urlpw123@cht:5988"})
    assert "urlpw123" in secrets_of(settings)
    settings = load_settings({"SMSBRIDGE_CHT_USERNAME": "gw", "SMSBRIDGE_CHT_PASSWORD": "pw456789"})
    assert secrets_of(settings) == ["pw456789"]


_MASKED = re.compile(r"^\+?\d{1,5}\*+\d{0,3}$")


def assert_state_lines(
    emitted: str, name: str, phone_key: str, *, count: int, exact: bool = True, **fields: str
) -> list[str]:
    """`count` (or with `exact=False` at least `count`) lines `event=<name>` at INFO, each with
    a message id, a state, `fields` and a masked `phone_key`."""
    found = [line for line in emitted.splitlines() if f" event={name} " in line]
    assert len(found) == count or (not exact and len(found) > count), (
        f"{len(found)} {name} lines, expected {count}:\n{emitted}"
    )
    for line in found:
        pairs = dict(p.split("=", 1) for p in line.split(" ") if "=" in p)
        assert pairs["level"] == "info", line
        assert pairs["message"] and pairs["state"], line
        assert _MASKED.match(pairs[phone_key]), line
        for key, value in fields.items():
            assert pairs[key] == value, line
    return found


class _Raw(logging.Handler):
    """Records as the code wrote them, before any redaction (INFO and above)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name} {text}")


def test_the_end_to_end_flow_logs_no_sms_text_phone_number_or_secret() -> None:
    from smsbridge.chtsim.demo_data import CHW_PHONES, GATEWAY_USER
    from smsbridge.cli.demo import scenario, stage

    raw = _Raw()
    root = logging.getLogger()
    root.addHandler(raw)  # first: sees each record before the redaction filter rewrites it
    stream = io.StringIO()
    handler = setup("INFO", stream=stream)
    demo_out = io.StringIO()
    try:
        with stage(demo_out, timeout=20) as s:
            scenario(s)  # inbound form, relay, reply sent + delivered, reminder, error reply
            token = s.token
            texts = [sms.text for sms in s.carriers.sends]
    finally:
        root.removeHandler(handler)
        root.removeHandler(raw)
    emitted = stream.getvalue()
    written = "\n".join(raw.lines)
    assert "event=inbound_submitted" in emitted, emitted  # the flow was logged
    # one INFO line per state change, with ids and the number masked
    assert_state_lines(emitted, "inbound_accepted", "sender", count=2, carrier="africastalking")
    assert_state_lines(emitted, "outgoing_queued", "to", count=len(texts))
    for sent in assert_state_lines(emitted, "outgoing_sent", "to", count=len(texts)):
        assert " carrier=africastalking " in sent and " external_id=" in sent, sent
    # the scenario waits for the reply and the reminder to be delivered, not the error reply
    assert_state_lines(emitted, "outgoing_delivered", "to", count=2, exact=False)
    assert len(texts) >= 3
    sms_texts = ["P 12 Jane Atieno", "P twelve", "Reminder: Jane Atieno", *texts]
    secrets = [token, "at-api-key", GATEWAY_USER[1]]
    phones = [*CHW_PHONES.values(), *(p.lstrip("+") for p in CHW_PHONES.values())]
    for needle in sms_texts + secrets + phones:
        assert needle not in emitted, f"{needle!r} reached the log output"
    # Not only the safety net: the code itself never hands these to a log call at INFO+.
    for needle in sms_texts + secrets:
        assert needle not in written, f"{needle!r} was passed to a log call at INFO or above"
    leaked = [p for p in CHW_PHONES.values() if p in written]
    assert not leaked, f"unmasked phone numbers passed to log calls: {leaked}\n{written}"


def test_secrets_of_settings_include_each_phone_password() -> None:
    settings = load_settings(
        {
            "SMSBRIDGE_CARRIERS": "chtgateway",
            "SMSBRIDGE_CHTGATEWAY_ACCOUNTS": "phone1:first-pass,phone2:second-pass",
        }
    )
    found = secrets_of(settings)
    assert "first-pass" in found and "second-pass" in found


@pytest.fixture
def info_logs() -> Iterator[tuple[io.StringIO, _Raw]]:
    """What the service writes at INFO (through the redaction filter), and every record at INFO
    and above as the code wrote it (before redaction)."""
    raw = _Raw()
    root = logging.getLogger()
    root.addHandler(raw)  # first: sees each record before the redaction filter rewrites it
    stream = io.StringIO()
    handler = setup("INFO", stream=stream)
    try:
        yield stream, raw
    finally:
        root.removeHandler(handler)
        root.removeHandler(raw)


def test_a_gateway_phone_flow_logs_each_state_change_with_ids_and_nothing_else(
    info_logs: tuple[io.StringIO, _Raw], gateway_phone_bridge: Any
) -> None:
    stream, raw = info_logs  # requested first: set up before the phone's flow runs
    extra = gateway_phone_bridge.extra
    emitted, written = stream.getvalue(), "\n".join(raw.lines)
    assert_state_lines(emitted, "inbound_accepted", "sender", count=1, carrier="chtgateway")
    assert "event=inbound_duplicate" not in emitted  # the phone's repeat: DEBUG only
    for state in ("queued", "sending", "sent", "delivered"):
        [line] = assert_state_lines(emitted, f"outgoing_{state}", "to", count=1)
        assert f" message={extra['message_id']} " in line + " ", line
        if state != "queued":
            assert " channel=chtgateway:phone1 " in line + " ", line
    for needle in [*extra["texts"], *extra["numbers"], extra["password"]]:
        assert needle not in emitted, f"{needle!r} reached the log output"
        assert needle not in written, f"{needle!r} was passed to a log call at INFO or above"


def test_outgoing_state_changes_are_logged_once_committed_and_never_when_rolled_back(
    info_logs: tuple[io.StringIO, _Raw], tmp_path: Path
) -> None:
    from smsbridge.outbound import messages as outgoing
    from smsbridge.outbound import transitions
    from smsbridge.sms import DeliveryState
    from smsbridge.store import Store

    stream, raw = info_logs
    now, number, text = 1_800_000_000.0, "+254712345678", "Your test result is ready"

    def insert_then_fail(conn: sqlite3.Connection) -> None:
        outgoing.insert_in(conn, "lost", number, text, now)
        raise RuntimeError("the job fails after the insert")

    def fail(conn: sqlite3.Connection) -> None:
        message = outgoing.get_in(conn, "m1")
        assert message is not None
        reason = "carrier: the 'To' number +254712345678 is unreachable"
        outgoing.advance_in(conn, message, DeliveryState.FAILED, now + 2, reason=reason)

    def hold(conn: sqlite3.Connection) -> None:
        message = outgoing.get_in(conn, "m2")
        assert message is not None
        outgoing.hold_in(conn, message, "loop: same text 4 times in 1h", now)

    async def flow(store: Store) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            outgoing.insert_in(conn, "m1", number, text, now)
            outgoing.insert_in(conn, "m2", number, text, now)

        await transitions.write(store, insert)
        assert "event=outgoing_queued" in stream.getvalue()
        with pytest.raises(RuntimeError):
            await transitions.write(store, insert_then_fail)
        await transitions.write(store, fail, attempt=3)
        await transitions.write(store, hold)
        await transitions.write(store, lambda c: outgoing.expire_stale_in(c, now + 10, ttl=5))

    with Store(tmp_path / "bridge.db") as store:
        asyncio.run(flow(store))
        assert outgoing.get(store, "lost") is None
    emitted, written = stream.getvalue(), "\n".join(raw.lines)
    assert "message=lost" not in emitted  # rolled back: never logged
    assert_state_lines(emitted, "outgoing_queued", "to", count=2, origin="cht")
    [failed, expired] = [line for line in emitted.splitlines() if "event=outgoing_failed" in line]
    assert "level=warning" in failed and " message=m1 " in failed and " attempt=3" in failed
    assert "reason=" in failed and "+2547*****678" in failed, failed
    assert "level=warning" in expired and " message=m2 " in expired
    assert " reason=expired " in expired + " ", expired
    [held] = [line for line in emitted.splitlines() if "event=outgoing_held" in line]
    assert "level=warning" in held and " message=m2 " in held
    for needle in (number, text):
        assert needle not in emitted and needle not in written
