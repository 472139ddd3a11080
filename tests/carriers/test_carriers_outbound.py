"""The send side of every push carrier: `send` against the carrier simulator (success and each
fault → the right exception class), and `parse_status` on recorded-style delivery reports."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import httpx
import pytest

from smsbridge.carriers import africastalking, generic, twilio, vonage
from smsbridge.carriers.base import CarrierConfig, WebhookRequest
from smsbridge.carriersim import DEFAULT_CREDENTIALS, CarrierSim
from smsbridge.errors import AuthFailure, PermanentError, RetryableError
from smsbridge.loopback import serve_in_thread
from smsbridge.sms import DeliveryState, OutboundSms, SendResult, StatusUpdate

NOW = datetime(2026, 1, 1, tzinfo=UTC)
MODULES: dict[str, ModuleType] = {
    "africastalking": africastalking,
    "twilio": twilio,
    "vonage": vonage,
    "generic": generic,
}


@pytest.fixture(scope="module")
def carriers() -> Iterator[tuple[CarrierSim, str]]:
    sim = CarrierSim()
    with serve_in_thread(sim.app) as url:
        yield sim, url


def config(carrier: str, url: str, **override: str) -> CarrierConfig:
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
    }[carrier]
    values.update(override)
    return CarrierConfig(carrier, values, public_url="https://sms.example.org")


def send(
    carrier: str, url: str, to: str = "+254712345678", timeout: float = 10.0, **override: str
) -> SendResult:
    async def go() -> SendResult:
        async with httpx.AsyncClient(timeout=timeout) as http:
            sms = OutboundSms("ref-1", to, "Habari 😀", NOW)
            result: SendResult = await MODULES[carrier].send(
                http, config(carrier, url, **override), sms
            )
            return result

    return asyncio.run(go())


@pytest.fixture
def sim(carriers: tuple[CarrierSim, str]) -> CarrierSim:
    s = carriers[0]
    for state in s.state.values():
        state.faults.clear()
        state.outage = None
        state.reports = False
        state.timeout_seconds = 1.0
    s.sends.clear()
    return s


@pytest.mark.parametrize("carrier", list(MODULES))
def test_send_returns_carrier_id(
    carrier: str, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    result = send(carrier, carriers[1])
    assert result.carrier == carrier and result.external_id
    assert result.state is DeliveryState.SENT
    [sent] = sim.sent_by(carrier)
    assert sent.message_id == result.external_id and sent.text == "Habari 😀"


def test_twilio_send_names_our_status_url_with_ref(
    carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    received: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        received.append(dict(httpx.QueryParams(request.content.decode())))
        return httpx.Response(201, json={"sid": "SM1", "status": "queued"})

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            await twilio.send(
                http,
                config("twilio", "http://twilio.test"),
                OutboundSms("ref 1", "+15558675310", "hi", NOW),
            )

    asyncio.run(go())
    assert received[0]["StatusCallback"] == (
        "https://sms.example.org/carriers/twilio/tw/status?ref=ref%201"
    )


def test_vonage_sends_unicode_type_and_client_ref(
    carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    send("vonage", carriers[1])
    [sent] = sim.sent_by("vonage")
    assert sent.to == "254712345678" and sent.ref == "ref-1"


@pytest.mark.parametrize("carrier", list(MODULES))
@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("5xx", RetryableError),
        ("throttle", RetryableError),
        ("invalid_number", PermanentError),
        ("timeout", RetryableError),
    ],
)
def test_send_faults_are_classified(
    carrier: str,
    fault: str,
    error: type[Exception],
    carriers: tuple[CarrierSim, str],
    sim: CarrierSim,
) -> None:
    sim.fail_next(carrier, fault)
    with pytest.raises(error):
        send(carrier, carriers[1], timeout=0.5)  # the simulator hangs 1 s on "timeout"
    assert sim.sent_by(carrier) == []


@pytest.mark.parametrize(
    ("carrier", "override"),
    [
        ("africastalking", {"api_key": "wrong"}),
        ("twilio", {"auth_token": "wrong"}),
        ("vonage", {"api_secret": "wrong"}),
        ("generic", {"send_token": "wrong"}),
    ],
)
def test_bad_credentials_are_auth_failures(
    carrier: str, override: dict[str, str], carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    with pytest.raises(AuthFailure):
        send(carrier, carriers[1], **override)


def test_throttle_carries_retry_after(carriers: tuple[CarrierSim, str], sim: CarrierSim) -> None:
    sim.fail_next("twilio", "throttle")
    with pytest.raises(RetryableError) as info:
        send("twilio", carriers[1])
    assert info.value.retry_after == 1.0


@pytest.mark.parametrize(
    ("carrier", "override", "named"),
    [
        ("africastalking", {"api_key": ""}, "SMSBRIDGE_AFRICASTALKING_API_KEY"),
        ("twilio", {"auth_token": ""}, "SMSBRIDGE_TWILIO_AUTH_TOKEN"),
        (
            "twilio",
            {"from_number": "", "messaging_service_sid": ""},
            "SMSBRIDGE_TWILIO_FROM_NUMBER or SMSBRIDGE_TWILIO_MESSAGING_SERVICE_SID",
        ),
        ("vonage", {"api_secret": ""}, "SMSBRIDGE_VONAGE_API_SECRET"),
        ("vonage", {"sender": ""}, "SMSBRIDGE_VONAGE_SENDER"),
        ("generic", {"send_url": ""}, "SMSBRIDGE_GENERIC_SEND_URL"),
    ],
)
def test_missing_send_settings_fail_before_any_request(
    carrier: str,
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


def _form(**fields: str) -> WebhookRequest:
    body = httpx.QueryParams(fields).__str__().encode()
    return WebhookRequest.build(
        "POST",
        "https://sms.example.org/x",
        "/x",
        {"content-type": "application/x-www-form-urlencoded"},
        "",
        body,
        NOW,
    )


def _query(query: str) -> WebhookRequest:
    return WebhookRequest.build(
        "GET", "https://sms.example.org/x?" + query, "/x", {}, query, b"", NOW
    )


STATUS_CASES: list[tuple[ModuleType, WebhookRequest, StatusUpdate | None]] = [
    (
        africastalking,
        _form(id="ATXid_1", status="Success", phoneNumber="+254711", networkCode="63902"),
        StatusUpdate(
            "africastalking", "ATXid_1", DeliveryState.DELIVERED, carrier_status="Success"
        ),
    ),
    (
        africastalking,
        _form(id="ATXid_1", status="Buffered"),
        StatusUpdate("africastalking", "ATXid_1", DeliveryState.SENT, carrier_status="Buffered"),
    ),
    (
        africastalking,
        _form(id="ATXid_1", status="Failed", failureReason="InsufficientCredit"),
        StatusUpdate(
            "africastalking",
            "ATXid_1",
            DeliveryState.FAILED,
            reason="InsufficientCredit",
            carrier_status="Failed",
        ),
    ),
    (
        africastalking,
        _form(id="ATXid_1", status="Rejected"),
        StatusUpdate(
            "africastalking",
            "ATXid_1",
            DeliveryState.FAILED,
            reason="Rejected",
            carrier_status="Rejected",
        ),
    ),
    (
        twilio,
        _form(MessageSid="SM1", MessageStatus="delivered", AccountSid="AC1"),
        StatusUpdate("twilio", "SM1", DeliveryState.DELIVERED, carrier_status="delivered"),
    ),
    (
        twilio,
        _form(MessageSid="SM1", MessageStatus="undelivered", ErrorCode="30003", ref="m1"),
        StatusUpdate(
            "twilio",
            "SM1",
            DeliveryState.FAILED,
            reason="twilio error 30003",
            carrier_status="undelivered",
            ref="m1",
        ),
    ),
    (twilio, _form(MessageSid="SM1", MessageStatus="received"), None),
    (
        vonage,
        _query(
            "msisdn=447700900000&to=MEDIC&messageId=0A01&status=delivered&err-code=0&client-ref=m1"
        ),
        StatusUpdate(
            "vonage", "0A01", DeliveryState.DELIVERED, carrier_status="delivered", ref="m1"
        ),
    ),
    (
        vonage,
        _query("messageId=0A01&status=expired&err-code=1"),
        StatusUpdate(
            "vonage",
            "0A01",
            DeliveryState.FAILED,
            reason="expired (err-code 1)",
            carrier_status="expired",
        ),
    ),
    (vonage, _query("messageId=0A01&status=unknown"), None),
    (
        generic,
        _form(id="g1", status="8"),
        StatusUpdate("generic", "g1", DeliveryState.SENT, carrier_status="8"),
    ),
    (
        generic,
        _form(id="g1", status="failed", reason="absent subscriber", ref="m1"),
        StatusUpdate(
            "generic",
            "g1",
            DeliveryState.FAILED,
            reason="absent subscriber",
            carrier_status="failed",
            ref="m1",
        ),
    ),
]


@pytest.mark.parametrize(("module", "req", "expected"), STATUS_CASES)
def test_parse_status(
    module: ModuleType, req: WebhookRequest, expected: StatusUpdate | None
) -> None:
    got = module.parse_status(req, config(module.NAME, "http://unused"))
    if expected is None:
        assert got == []
    else:
        assert [
            (u.carrier, u.external_id, u.state, u.reason, u.carrier_status, u.ref) for u in got
        ] == [
            (
                expected.carrier,
                expected.external_id,
                expected.state,
                expected.reason,
                expected.carrier_status,
                expected.ref,
            )
        ]


@pytest.mark.parametrize("module", list(MODULES.values()))
def test_status_map_covers_only_our_states(module: ModuleType) -> None:
    assert set(module.STATUS_MAP.values()) <= set(DeliveryState)
    assert set(module.ERRORS.values()) <= {"retryable", "permanent", "auth"}
