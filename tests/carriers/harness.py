"""One case harness for every carrier (as nyaruka/courier's RunIncomingTestCases does).

A carrier's test module lists its webhook cases (a request, and what it must answer and store)
and gets its tests from here:

    TestIncoming = incoming_tests("africastalking", CASES)
    TestSending = sending_tests("africastalking", bad_credentials=..., status_cases=...)

`incoming_tests` runs each case against a running bridge (tests/conftest.py `bridge`) through
HTTP, and adds to every carrier, without the module asking: a request with a wrong webhook token
(401, nothing stored) and a log check (the cases replayed against a bridge whose workers submit
to a CHT simulator; no log record at INFO or above holds an SMS text, a full phone number or a
secret). `sending_tests` runs a carrier's `send` against the carrier simulator (its success and
each fault) and its `parse_status` on recorded-style delivery reports.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from smsbridge.carriers import sending
from smsbridge.carriers.base import CarrierConfig, WebhookRequest
from smsbridge.carriersim import DEFAULT_CREDENTIALS, CarrierSim
from smsbridge.errors import AuthFailure, PermanentError, RetryableError
from smsbridge.loopback import wait_for
from smsbridge.outbound.channels import is_throttle
from smsbridge.sms import DeliveryState, OutboundSms, SendResult, StatusUpdate
from tests.conftest import WEBHOOK_TOKENS, RunningBridge, bridge_env

ARRIVAL = "arrival"
"""An expected `received_at`: the bridge's clock when the request arrived (no carrier date)."""

Sign = Callable[[str, Mapping[str, Any]], dict[str, str]]
"""Headers that sign a request to `path` with form `data` (Twilio's X-Twilio-Signature)."""


@dataclass(frozen=True)
class Case:
    """One webhook request and what the bridge must make of it.

    `stored`: the rows `messages` must hold afterwards, each compared on the columns it names
    (`received_at` may be ARRIVAL); `()` for nothing stored, None to leave the store alone.
    `response`: the whole JSON body expected; `error`: only its `error` member; `reply`: text
    the body must contain; `media_type`: how its Content-Type must start."""

    label: str
    data: Mapping[str, Any] | None = None  # a form body
    json: Any = None  # a JSON body
    params: Mapping[str, Any] | None = None  # the query string
    content: bytes | None = None  # a raw body (with `headers`)
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "POST"
    status: int = 200
    stored: Sequence[Mapping[str, Any]] | None = None
    response: Any = None
    error: str | None = None
    reply: str | None = None
    media_type: str | None = None

    def send(self, bridge: RunningBridge, path: str, sign: Sign | None = None) -> httpx.Response:
        headers = dict(self.headers)
        if sign is not None:
            headers.update(sign(path, self.data or {}))
        return bridge.http.request(
            self.method,
            path,
            data=self.data,
            json=self.json,
            params=self.params,
            content=self.content,
            headers=headers,
        )


def check_case(bridge: RunningBridge, case: Case, response: httpx.Response) -> None:
    """The answer and the stored rows are what `case` expects."""
    assert response.status_code == case.status, response.text
    if case.response is not None:
        assert response.json() == case.response
    if case.error is not None:
        assert response.json()["error"] == case.error
    if case.reply is not None:
        assert case.reply in response.text
    if case.media_type is not None:
        assert response.headers["content-type"].startswith(case.media_type)
    if case.stored is not None:
        arrival = int(bridge.clock() * 1000)
        rows = bridge.messages()
        assert len(rows) == len(case.stored), rows
        for row, expected in zip(rows, case.stored, strict=True):
            want = {k: arrival if v == ARRIVAL else v for k, v in expected.items()}
            assert {k: row[k] for k in want} == want


def _first_accepted(cases: Sequence[Case]) -> Case:
    return next(c for c in cases if c.status < 300 and c.method == "POST")


def incoming_tests(
    carrier: str,
    cases: Sequence[Case],
    *,
    sign: Sign | None = None,
    secrets: Iterable[str] = (),
) -> type:
    """The inbound tests of `carrier`: its `cases`, a wrong token and the log check. `secrets`:
    what the logs must not show besides the webhook tokens and the bridge's own secrets."""
    path = f"/carriers/{carrier}/{WEBHOOK_TOKENS[carrier]}/inbound"
    wrong_path = f"/carriers/{carrier}/not-the-token/inbound"
    accepted = _first_accepted(cases)

    class Incoming:
        @pytest.mark.parametrize("case", cases, ids=[c.label for c in cases])
        def test_case(self, bridge: RunningBridge, case: Case) -> None:
            check_case(bridge, case, case.send(bridge, path, sign))

        def test_a_wrong_token_is_401_and_nothing_stored(self, bridge: RunningBridge) -> None:
            response = accepted.send(bridge, wrong_path, sign)
            assert response.status_code == 401, response.text
            assert response.json()["error"] == "unauthorized"
            assert bridge.messages() == []

        def test_logs_hold_no_text_number_or_secret(
            self,
            bridge_factory: Callable[..., RunningBridge],
            demo_cht_url: str,
            caplog: pytest.LogCaptureFixture,
        ) -> None:
            caplog.set_level(logging.INFO)
            bridge = bridge_factory(cht_url=demo_cht_url, start_workers=True)
            for case in cases:
                assert case.send(bridge, path, sign).status_code == case.status, case.label
            assert accepted.send(bridge, wrong_path, sign).status_code == 401

            def handed_over() -> list[dict[str, Any]]:
                rows = bridge.messages()
                return rows if rows and all(r["state"] != "received" for r in rows) else []

            rows = wait_for(handed_over, "the workers to hand every message to CHT")
            # the bridge's records (its server thread); not this test's own HTTP client's
            records = [
                r
                for r in caplog.records
                if r.levelno >= logging.INFO and r.thread != threading.get_ident()
            ]
            # the check saw the bridge at work: one line per message it handed to CHT
            for row in rows:
                assert any(row["uuid"] in r.getMessage() for r in records), row
            logged = "\n".join(
                r.getMessage() + "\n" + (r.exc_text or "") + "\n" + str(r.exc_info or "")
                for r in records
            )
            for secret in _secrets(demo_cht_url, secrets):
                assert secret not in logged, "a secret is logged"
            for row in rows:
                for number in _full_numbers(row["sender"]):
                    assert number not in logged, f"{row['sender']} is logged"
                if len(row["text"]) >= 4:
                    assert row["text"] not in logged, f"the text {row['text']!r} is logged"

    return Incoming


def _secrets(cht_url: str, extra: Iterable[str]) -> list[str]:
    password = re.search(r"://[^:/@]+:([^@]+)@", cht_url)
    configured = [
        value
        for name, value in bridge_env(Path(), cht_url).items()
        if name.endswith(("_TOKEN", "_SECRET", "_API_KEY", "_PASSWORD"))
    ]
    found = [*WEBHOOK_TOKENS.values(), *configured, *extra]
    if password:
        found.append(password.group(1))
    return [s for s in found if s]


def _full_numbers(sender: str) -> list[str]:
    """A stored sender as the log could spell it in full, when it is a phone number."""
    digits = "".join(c for c in sender if c.isdigit())
    if len(digits) < 8 or not re.fullmatch(r"\+?[0-9 ().\-]+", sender):
        return []
    return [sender, digits]


# -- the send side: the carrier simulator -------------------------------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FAULTS = [
    ("5xx", RetryableError),
    ("throttle", RetryableError),
    ("invalid_number", PermanentError),
    ("timeout", RetryableError),
]


def module_of(carrier: str) -> ModuleType:
    """The carrier's module (smsbridge/carriers/<carrier>.py): its module-level functions."""
    return importlib.import_module(f"smsbridge.carriers.{carrier}")


def config(carrier: str, url: str, **override: str) -> CarrierConfig:
    """`carrier`'s settings for the carrier simulator at `url` (its default credentials)."""
    at_user, at_key = DEFAULT_CREDENTIALS["africastalking"]
    sid, token = DEFAULT_CREDENTIALS["twilio"]
    key, secret = DEFAULT_CREDENTIALS["vonage"]
    values = {
        "africastalking": {"api_url": url, "username": at_user, "api_key": at_key},
        "twilio": {
            "api_url": url,
            "account_sid": sid,
            "auth_token": token,
            "from_number": "+15017122661",
            "webhook_token": "tw",
        },
        "vonage": {
            "api_url": url,
            "api_key": key,
            "api_secret": secret,
            "sender": "MEDIC",
            "webhook_token": "vn",
        },
        "generic": {
            "send_url": url + "/send",
            "send_token": DEFAULT_CREDENTIALS["generic"][1],
            "webhook_token": "gn",
        },
        "kannel": {
            "sendsms_url": url + "/cgi-bin/sendsms",
            "username": DEFAULT_CREDENTIALS["kannel"][0],
            "password": DEFAULT_CREDENTIALS["kannel"][1],
            "webhook_token": "kn",
        },
        "rapidpro": {"api_url": url, "api_token": DEFAULT_CREDENTIALS["rapidpro"][1]},
    }[carrier]
    values.update(override)
    return CarrierConfig(carrier, values, public_url="https://sms.example.org")


def send(
    carrier: str,
    url: str,
    to: str = "+254712345678",
    timeout: float = 10.0,
    text: str = "Habari 😀",
    **override: str,
) -> SendResult:
    """`carrier`'s `send` of one SMS (`text`, ref `ref-1`) to the simulator at `url`."""

    async def go() -> SendResult:
        async with httpx.AsyncClient(timeout=timeout) as http:
            sms = OutboundSms("ref-1", to, text, NOW)
            result: SendResult = await module_of(carrier).send(
                http, config(carrier, url, **override), sms
            )
            return result

    return asyncio.run(go())


def form_request(**fields: str) -> WebhookRequest:
    """A delivery report posted as a form."""
    body = str(httpx.QueryParams(fields)).encode()
    return WebhookRequest.build(
        "POST",
        "https://sms.example.org/x",
        "/x",
        {"content-type": "application/x-www-form-urlencoded"},
        "",
        body,
        NOW,
    )


def query_request(query: str) -> WebhookRequest:
    """A delivery report sent as a GET with `query`."""
    return WebhookRequest.build(
        "GET", "https://sms.example.org/x?" + query, "/x", {}, query, b"", NOW
    )


def _summary(update: StatusUpdate) -> tuple[Any, ...]:
    return (
        update.carrier,
        update.external_id,
        update.state,
        update.reason,
        update.carrier_status,
        update.ref,
    )


def sending_tests(
    carrier: str,
    *,
    bad_credentials: Mapping[str, str],
    missing_settings: Sequence[tuple[Mapping[str, str], str]],
    status_cases: Sequence[tuple[WebhookRequest, StatusUpdate | None]],
    throttles: bool = True,
) -> type:
    """The send-side tests of `carrier`: a send, each fault, wrong credentials
    (`bad_credentials` overrides its settings), each of `missing_settings` (settings emptied,
    the name the error must give), and `parse_status` on `status_cases` (None: ignored).
    `throttles`: the simulator's `throttle` answer is one the channel pauses for
    (outbound/channels.py `is_throttle`), with or without a Retry-After."""

    class Sending:
        def test_send_returns_carrier_id(
            self, carriers: tuple[CarrierSim, str], sim: CarrierSim
        ) -> None:
            result = send(carrier, carriers[1])
            assert result.carrier == carrier and result.external_id
            assert result.state is DeliveryState.SENT
            [sent] = sim.sent_by(carrier)
            assert sent.message_id == result.external_id and sent.text == "Habari 😀"

        @pytest.mark.parametrize(("fault", "error"), FAULTS, ids=[f for f, _e in FAULTS])
        def test_send_faults_are_classified(
            self,
            fault: str,
            error: type[Exception],
            carriers: tuple[CarrierSim, str],
            sim: CarrierSim,
        ) -> None:
            sim.fail_next(carrier, fault)
            with pytest.raises(error) as info:
                send(carrier, carriers[1], timeout=0.5)  # the simulator hangs 1 s on "timeout"
            assert sim.sent_by(carrier) == []
            if fault == "throttle":
                paused = isinstance(info.value, RetryableError) and is_throttle(info.value)
                assert paused is throttles

        def test_a_throttle_without_retry_after_still_pauses_the_channel(
            self, carriers: tuple[CarrierSim, str], sim: CarrierSim
        ) -> None:
            sim.configure(carrier, throttle_retry_after=False)
            try:
                sim.fail_next(carrier, "throttle")
                with pytest.raises(RetryableError) as info:
                    send(carrier, carriers[1])
            finally:
                sim.configure(carrier, throttle_retry_after=True)
            assert is_throttle(info.value) is throttles

        def test_bad_credentials_are_auth_failures(
            self, carriers: tuple[CarrierSim, str], sim: CarrierSim
        ) -> None:
            with pytest.raises(AuthFailure):
                send(carrier, carriers[1], **bad_credentials)

        @pytest.mark.parametrize(("override", "named"), missing_settings)
        def test_missing_send_settings_fail_before_any_request(
            self,
            override: dict[str, str],
            named: str,
            carriers: tuple[CarrierSim, str],
            sim: CarrierSim,
        ) -> None:
            before = sim.requests[carrier]
            with pytest.raises(PermanentError) as info:
                send(carrier, carriers[1], **override)
            assert info.value.code == "config" and named in info.value.detail
            assert sim.requests[carrier] == before  # refused here: nothing went over the network

        @pytest.mark.parametrize(("req", "expected"), status_cases)
        def test_parse_status(self, req: WebhookRequest, expected: StatusUpdate | None) -> None:
            got = module_of(carrier).parse_status(req, config(carrier, "http://unused"))
            if expected is None:
                assert got == []
            else:
                assert [_summary(u) for u in got] == [_summary(expected)]

        def test_status_map_covers_only_our_states(self) -> None:
            module = module_of(carrier)
            assert set(module.STATUS_MAP.values()) <= set(DeliveryState)
            kinds = {sending.RETRYABLE, sending.THROTTLE, sending.PERMANENT, sending.AUTH}
            assert set(module.ERRORS.values()) <= kinds

    return Sending
