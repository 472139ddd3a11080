"""Twilio inbound webhooks: recorded-style payloads -> stored messages; X-Twilio-Signature
checked exactly as Twilio's own RequestValidator does (the official package, test-only)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from twilio.request_validator import RequestValidator

from smsbridge.carriers import twilio
from smsbridge.carriers.base import CarrierConfig, WebhookRequest
from smsbridge.errors import Forbidden

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

CASES = [
    # label, overrides, expected (sender, text, external id)
    ("form report", {}, ("+254712345678", "P 12 Jane", "SM0123456789abcdef0123456789abcdef")),
    (
        "unicode text",
        {
            "Body": "Habari, mtoto ana homa 🤒",
            "MessageSid": "SMu1",
            "SmsSid": "SMu1",
            "SmsMessageSid": "SMu1",
        },
        ("+254712345678", "Habari, mtoto ana homa 🤒", "SMu1"),
    ),
    (
        "empty body",
        {"Body": "", "MessageSid": "SMe1", "SmsSid": "SMe1", "SmsMessageSid": "SMe1"},
        ("+254712345678", "", "SMe1"),
    ),
    (
        "multi-line, & and =",
        {
            "Body": "a=1&b=2\nline two",
            "MessageSid": "SMm1",
            "SmsSid": "SMm1",
            "SmsMessageSid": "SMm1",
            "From": "+15005550006",
        },
        ("+15005550006", "a=1&b=2\nline two", "SMm1"),
    ),
]


def _post(
    bridge: Any, path: str, form: dict[str, str], token: str = AUTH_TOKEN, public: str = PUBLIC
) -> httpx.Response:
    signature = RequestValidator(token).compute_signature(public + path, form)
    return bridge.http.post(path, data=form, headers={"X-Twilio-Signature": signature})


@pytest.mark.parametrize(("label", "overrides", "expected"), CASES, ids=[c[0] for c in CASES])
def test_recorded_payload_is_stored(bridge, label, overrides, expected) -> None:  # type: ignore[no-untyped-def]
    path = bridge.inbound_path("twilio")
    response = _post(bridge, path, {**BASE, **overrides})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert "<Response/>" in response.text
    [row] = bridge.messages()
    assert (row["sender"], row["text"], row["external_id"]) == expected
    assert row["carrier"] == "twilio" and row["recipient"] == "+254700000000"
    assert row["received_at"] == int(bridge.clock() * 1000)


def test_duplicate_delivery_is_stored_once(bridge) -> None:  # type: ignore[no-untyped-def]
    path = bridge.inbound_path("twilio")
    for _ in range(3):
        assert _post(bridge, path, BASE).status_code == 200
    assert len(bridge.messages()) == 1


def test_bad_signature_is_403_and_nothing_stored(bridge) -> None:  # type: ignore[no-untyped-def]
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


def test_wrong_or_missing_token_is_401_and_nothing_stored(bridge) -> None:  # type: ignore[no-untyped-def]
    path = "/carriers/twilio/wrong-token/inbound"
    assert _post(bridge, path, BASE).status_code == 401
    assert bridge.http.post("/carriers/twilio//inbound", data=BASE).status_code in (401, 404)
    assert bridge.messages() == []


def test_get_is_not_a_twilio_inbound_method(bridge) -> None:  # type: ignore[no-untyped-def]
    response = bridge.http.get(bridge.inbound_path("twilio"), params=BASE)
    assert response.status_code == 405
    assert bridge.messages() == []


def _request(
    url: str,
    form: dict[str, str] | list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes | None = None,
    ctype: str = "application/x-www-form-urlencoded",
) -> WebhookRequest:
    from datetime import UTC, datetime
    from urllib.parse import urlsplit

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
    import hashlib
    import json

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
