"""Twilio: inbound webhooks (recorded-style payloads -> stored messages), X-Twilio-Signature
checked exactly as Twilio's own RequestValidator does (the official package, test-only),
sending through the carrier simulator and its delivery reports. Driven by
tests/carriers/harness.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from twilio.request_validator import RequestValidator

from smsbridge.carriers import twilio
from smsbridge.carriers.base import CarrierConfig, WebhookRequest
from smsbridge.carriers.sending import THROTTLE_WAIT
from smsbridge.carriersim import CarrierSim
from smsbridge.errors import Forbidden, RetryableError
from smsbridge.outbound.channels import is_throttle
from smsbridge.sms import DeliveryState, OutboundSms, StatusUpdate
from tests.carriers.harness import (
    ARRIVAL,
    NOW,
    Case,
    config,
    form_request,
    incoming_tests,
    send,
    sending_tests,
)
from tests.conftest import RunningBridge

AUTH_TOKEN = "12345abcdef"
PUBLIC = "https://sms.example.org"

# A webhook as Twilio sends it (twilio.com/docs/messaging/guides/webhook-request).
BASE = {
    "ToCountry": "KE",
    "ToState": "",
    "SmsMessageSid": "SM0123456789abcdef0123456789abcdef",
    "NumMedia": "0",
    "ToCity": "",
    "FromZip": "",
    "SmsSid": "SM0123456789abcdef0123456789abcdef",
    "FromState": "",
    "SmsStatus": "received",
    "FromCity": "",
    "Body": "P 12 Jane",
    "FromCountry": "KE",
    "To": "+254700000000",
    "ToZip": "",
    "NumSegments": "1",
    "MessageSid": "SM0123456789abcdef0123456789abcdef",
    "AccountSid": "AC" + "0" * 32,
    "From": "+254712345678",
    "ApiVersion": "2010-04-01",
}
SIDS = ("MessageSid", "SmsSid", "SmsMessageSid")  # all three name the message


def sign(path: str, form: Mapping[str, Any], token: str = AUTH_TOKEN) -> dict[str, str]:
    """The X-Twilio-Signature Twilio sends with `form` posted to our public URL + `path`."""
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(PUBLIC + path, form)}


def stored(label: str, sid: str, text: str, sender: str = "+254712345678") -> Case:
    """A webhook with `sid`, `text` from `sender`: answered with TwiML, stored as sent."""
    return Case(
        label,
        data={**BASE, "Body": text, "From": sender, **dict.fromkeys(SIDS, sid)},
        media_type="text/xml",
        reply="<Response/>",
        stored=[
            {
                "sender": sender,
                "text": text,
                "external_id": sid,
                "carrier": "twilio",
                "recipient": "+254700000000",
                "received_at": ARRIVAL,
            }
        ],
    )


CASES = [
    stored("form report", "SM0123456789abcdef0123456789abcdef", "P 12 Jane"),
    stored("unicode text", "SMu1", "Habari, mtoto ana homa 🤒"),
    stored("empty body", "SMe1", ""),
    stored("multi-line, & and =", "SMm1", "a=1&b=2\nline two", sender="+15005550006"),
    Case("GET is not a Twilio inbound method", method="GET", params=BASE, status=405, stored=()),
]

TestIncoming = incoming_tests("twilio", CASES, sign=sign)


def _post(
    bridge: RunningBridge, path: str, form: dict[str, str], token: str = AUTH_TOKEN
) -> httpx.Response:
    return bridge.http.post(path, data=form, headers=sign(path, form, token))


def test_duplicate_delivery_is_stored_once(bridge: RunningBridge) -> None:
    path = bridge.inbound_path("twilio")
    for _ in range(3):
        assert _post(bridge, path, BASE).status_code == 200
    assert len(bridge.messages()) == 1


def test_bad_signature_is_403_and_nothing_stored(bridge: RunningBridge) -> None:
    path = bridge.inbound_path("twilio")
    response = _post(bridge, path, BASE, token="not-the-token")
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    tampered = dict(BASE)
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + path, BASE)
    tampered["Body"] = "P 99 Mallory"
    response = bridge.http.post(path, data=tampered, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 403
    response = bridge.http.post(path, data=BASE)  # no signature at all
    assert response.status_code == 403
    assert bridge.messages() == []


def test_a_missing_token_is_refused_and_nothing_stored(bridge: RunningBridge) -> None:
    # (a wrong token: TestIncoming's test_a_wrong_token_is_401_and_nothing_stored)
    assert bridge.http.post("/carriers/twilio//inbound", data=BASE).status_code in (401, 404)
    assert bridge.messages() == []


def _request(
    url: str,
    form: dict[str, str] | list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes | None = None,
    ctype: str = "application/x-www-form-urlencoded",
) -> WebhookRequest:
    parts = urlsplit(url)
    raw = body if body is not None else urlencode(form).encode()
    return WebhookRequest.build(
        "POST",
        url,
        parts.path,
        {"content-type": ctype, **headers},
        parts.query,
        raw,
        datetime.now(UTC),
    )


SIGNATURE_CASES = [
    ("https://sms.example.org/carriers/twilio/t/inbound", BASE),
    ("https://sms.example.org/carriers/twilio/t/inbound?foo=bar&x=%20y", BASE),
    ("https://sms.example.org:443/carriers/twilio/t/inbound", BASE),
    ("http://127.0.0.1:8080/carriers/twilio/t/inbound", {"Body": "ñ é 中文", "From": "+1"}),
    ("https://sms.example.org/carriers/twilio/t/inbound", {}),
]


@pytest.mark.parametrize(("url", "form"), SIGNATURE_CASES)
def test_our_check_agrees_with_twilio_request_validator(url: str, form: dict[str, str]) -> None:
    validator = RequestValidator(AUTH_TOKEN)
    config = CarrierConfig("twilio", {"auth_token": AUTH_TOKEN})
    good = validator.compute_signature(url, form)
    assert validator.validate(url, form, good)
    twilio.verify(_request(url, form, {"x-twilio-signature": good}), config)
    # the other port spelling is accepted by both
    other = url.replace(":443", "") if ":443" in url else url
    assert twilio.compute_signature(AUTH_TOKEN, other, form.items()) == (
        validator.compute_signature(other, form)
    )
    bad = validator.compute_signature(url + "x", form)
    assert not validator.validate(url, form, bad)
    with pytest.raises(Forbidden):
        twilio.verify(_request(url, form, {"x-twilio-signature": bad}), config)


def test_repeated_parameters_are_signed_like_twilio_does() -> None:
    class Multi(dict):  # what Flask/Django hand the validator for repeated keys
        def getlist(self, name: str) -> list[str]:
            return ["b", "a"] if name == "MediaUrl" else [self[name]]

    url = "https://sms.example.org/carriers/twilio/t/inbound"
    pairs = [("From", "+1"), ("MediaUrl", "b"), ("MediaUrl", "a")]
    expected = RequestValidator(AUTH_TOKEN).compute_signature(
        url, Multi({"From": "+1", "MediaUrl": "b"})
    )
    assert twilio.compute_signature(AUTH_TOKEN, url, pairs) == expected


def test_json_body_is_checked_with_body_sha256() -> None:
    body = json.dumps({"MessageSid": "SMj", "From": "+1", "Body": "x"})
    url = (
        "https://sms.example.org/carriers/twilio/t/inbound?bodySHA256="
        + hashlib.sha256(body.encode()).hexdigest()
    )
    validator = RequestValidator(AUTH_TOKEN)
    signature = validator.compute_signature(url, {})
    assert validator.validate(url, body, signature)
    config = CarrierConfig("twilio", {"auth_token": AUTH_TOKEN})
    twilio.verify(
        _request(url, {}, {"x-twilio-signature": signature}, body.encode(), "application/json"),
        config,
    )
    with pytest.raises(Forbidden):
        twilio.verify(
            _request(
                url,
                {},
                {"x-twilio-signature": signature},
                body.replace("x", "y").encode(),
                "application/json",
            ),
            config,
        )


def test_hmac_sha256_signing_key_from_webhook_rules() -> None:
    url = "https://sms.example.org/carriers/twilio/t/inbound"
    key = "shared-key-secret"
    signature = RequestValidator(key).compute_signature(url, BASE, "HMAC_SHA256")
    headers = {
        "x-twilio-signature": signature,
        "x-twilio-webhooks-signature-settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
    }
    config = CarrierConfig("twilio", {"auth_token": AUTH_TOKEN, "signing_key": key})
    twilio.verify(_request(url, BASE, headers), config)
    with pytest.raises(Forbidden):
        twilio.verify(
            _request(url, BASE, headers),
            CarrierConfig("twilio", {"auth_token": AUTH_TOKEN, "signing_key": "other"}),
        )


def test_public_url_path_prefix_is_part_of_the_signed_url() -> None:
    public = "https://example.org/sms"
    path = "/carriers/twilio/t/inbound"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(public + path, BASE)
    req = _request("http://127.0.0.1:9999" + path, BASE, {"x-twilio-signature": signature})
    twilio.verify(req, CarrierConfig("twilio", {"auth_token": AUTH_TOKEN}, public_url=public))
    with pytest.raises(Forbidden):  # without the public URL the proxy's view does not match
        twilio.verify(req, CarrierConfig("twilio", {"auth_token": AUTH_TOKEN}))


# -- sending and delivery reports ----------------------------------------------------------------

STATUS_CASES = [
    (
        form_request(MessageSid="SM1", MessageStatus="delivered", AccountSid="AC1"),
        StatusUpdate("twilio", "SM1", DeliveryState.DELIVERED, carrier_status="delivered"),
    ),
    (
        form_request(MessageSid="SM1", MessageStatus="undelivered", ErrorCode="30003", ref="m1"),
        StatusUpdate(
            "twilio",
            "SM1",
            DeliveryState.FAILED,
            reason="twilio error 30003",
            carrier_status="undelivered",
            ref="m1",
        ),
    ),
    (form_request(MessageSid="SM1", MessageStatus="received"), None),
]

TestSending = sending_tests(
    "twilio",
    bad_credentials={"auth_token": "wrong"},
    missing_settings=[
        ({"auth_token": ""}, "SMSBRIDGE_TWILIO_AUTH_TOKEN"),
        (
            {"from_number": "", "messaging_service_sid": ""},
            "SMSBRIDGE_TWILIO_FROM_NUMBER or SMSBRIDGE_TWILIO_MESSAGING_SERVICE_SID",
        ),
    ],
    status_cases=STATUS_CASES,
)


def test_send_names_our_status_url_with_ref() -> None:
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


def test_throttle_carries_retry_after(carriers: tuple[CarrierSim, str], sim: CarrierSim) -> None:
    sim.fail_next("twilio", "throttle")
    with pytest.raises(RetryableError) as info:
        send("twilio", carriers[1])
    assert info.value.retry_after == 1.0


def test_a_throttle_without_retry_after_pauses_the_channel_a_moment(
    carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    """Twilio's 429 (error 20429, "not processed, safe to retry") names no wait: the channel
    pauses for a throttle code's moment (carriers/sending.py THROTTLE_WAIT), not the longer
    pause of a bare 429."""
    sim.configure("twilio", throttle_retry_after=False)
    try:
        sim.fail_next("twilio", "throttle")
        with pytest.raises(RetryableError) as info:
            send("twilio", carriers[1])
    finally:
        sim.configure("twilio", throttle_retry_after=True)
    assert info.value.code == "twilio_20429" and info.value.status == 429
    assert info.value.retry_after == THROTTLE_WAIT and is_throttle(info.value)
    assert sim.sent_by("twilio") == []
