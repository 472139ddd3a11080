"""Refused webhooks leave a trace: one WARNING line each (reason, carrier, masked sender; never
the text or the token) and `smsbridge_webhooks_rejected_total{carrier,reason}`, exported at 0
for the enabled carriers from the start."""

from __future__ import annotations

import logging

import pytest

from smsbridge.carriers import twilio
from tests.conftest import WEBHOOK_TOKENS
from tests.web.test_metrics import scrape

SENDER = "+254712345678"
TEXT = "P 12 Jane secret-health-text"
REJECTED = "smsbridge_webhooks_rejected_total"
REASONS = (
    "malformed",
    "unauthorized",
    "bad_signature",
    "not_found",
    "method_not_allowed",
    "too_large",
    "unsupported_media_type",
)


def rejected(bridge, carrier: str, reason: str) -> float:  # type: ignore[no-untyped-def]
    got = scrape(bridge.http.get("/metrics").text)
    return got.get((REJECTED, (("carrier", carrier), ("reason", reason))), -1.0)


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "event=webhook_rejected" in r.getMessage()]


def test_every_enabled_carrier_and_reason_is_exported_at_zero(bridge_factory) -> None:  # type: ignore[no-untyped-def]
    bridge = bridge_factory()
    for carrier in ("africastalking", "generic", "twilio", "vonage", "unknown"):
        for reason in REASONS:
            assert rejected(bridge, carrier, reason) == 0, (carrier, reason)


@pytest.mark.parametrize(
    ("request_kwargs", "status", "carrier", "reason"),
    [
        (  # wrong token
            {"method": "POST", "url": "/carriers/generic/wrong-token/inbound"},
            401,
            "generic",
            "unauthorized",
        ),
        (  # a carrier we do not know: its name is not a label
            {"method": "POST", "url": "/carriers/nosuch/tok/inbound"},
            404,
            "unknown",
            "not_found",
        ),
        (  # a path under /carriers/ that no route takes
            {"method": "POST", "url": "/carriers/generic/tok/elsewhere"},
            404,
            "generic",
            "not_found",
        ),
        (  # GET to a POST-only carrier
            {"method": "GET", "url": "inbound:africastalking"},
            405,
            "africastalking",
            "method_not_allowed",
        ),
        (  # malformed JSON
            {
                "method": "POST",
                "url": "inbound:generic",
                "content": b'{"from": ',
                "headers": {"content-type": "application/json"},
            },
            400,
            "generic",
            "malformed",
        ),
        (  # neither a form nor JSON
            {
                "method": "POST",
                "url": "inbound:generic",
                "content": TEXT.encode(),
                "headers": {"content-type": "text/plain"},
            },
            415,
            "generic",
            "unsupported_media_type",
        ),
        (  # over SMSBRIDGE_MAX_BODY_BYTES by its Content-Length: the body limit answers
            {"method": "POST", "url": "inbound:generic", "data": {"text": "z" * 70_000}},
            413,
            "generic",
            "too_large",
        ),
    ],
)
def test_a_refused_webhook_is_logged_and_counted(  # type: ignore[no-untyped-def]
    bridge, caplog: pytest.LogCaptureFixture, request_kwargs, status, carrier, reason
) -> None:
    caplog.set_level(logging.INFO)
    kwargs = dict(request_kwargs)
    if kwargs["url"].startswith("inbound:"):
        kwargs["url"] = bridge.inbound_path(kwargs["url"].split(":")[1])
    before = rejected(bridge, carrier, reason)
    response = bridge.http.request(**kwargs)
    assert response.status_code == status, response.text
    [line] = refusals(caplog)
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert f"carrier={carrier}" in message and f"reason={reason}" in message
    assert TEXT not in message
    assert all(token not in message for token in WEBHOOK_TOKENS.values())
    assert rejected(bridge, carrier, reason) == before + 1


def _twilio_form() -> dict[str, str]:
    return {"From": SENDER, "To": "+15005550006", "Body": TEXT, "MessageSid": "SM" + "a" * 32}


def test_a_twilio_signature_for_another_url_names_the_url_we_computed(  # type: ignore[no-untyped-def]
    bridge, caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy change that no longer matches SMSBRIDGE_PUBLIC_URL: every Twilio POST fails its
    signature, and the log line says for which scheme and host we computed it."""
    caplog.set_level(logging.INFO)
    path = bridge.inbound_path("twilio")
    form = _twilio_form()
    signed_for = "https://new-proxy.example.net" + path  # what Twilio now calls
    signature = twilio.compute_signature("12345abcdef", signed_for, form.items())
    before = rejected(bridge, "twilio", "bad_signature")
    response = bridge.http.post(path, data=form, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 403
    assert bridge.messages() == []
    [line] = refusals(caplog)
    message = line.getMessage()
    assert line.levelno == logging.WARNING
    assert "reason=bad_signature" in message and "carrier=twilio" in message
    assert "https://sms.example.org" in message  # the URL we computed: scheme and host
    assert WEBHOOK_TOKENS["twilio"] not in message  # ... and never its path (the token)
    assert "sender=+2547*" in message  # the sender, masked
    assert SENDER not in message and "secret-health-text" not in message
    assert rejected(bridge, "twilio", "bad_signature") == before + 1


def test_an_accepted_webhook_is_not_counted(  # type: ignore[no-untyped-def]
    bridge_factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bridge = bridge_factory()
    response = bridge.http.post(
        bridge.inbound_path("generic"), data={"from": SENDER, "text": TEXT, "id": "g1"}
    )
    assert response.status_code == 200
    assert refusals(caplog) == []
    assert all(rejected(bridge, "generic", reason) == 0 for reason in REASONS)
