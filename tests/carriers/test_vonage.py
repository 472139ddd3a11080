"""Vonage: inbound webhooks (GET or POST, form or JSON) -> stored messages, the optional `sig`
signature checked against Vonage's published vectors, sending through the carrier simulator and
its delivery reports. Driven by tests/carriers/harness.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from smsbridge.carriers import vonage
from smsbridge.carriers.base import CarrierConfig, WebhookRequest
from smsbridge.carriersim import CarrierSim
from smsbridge.errors import Forbidden
from smsbridge.sms import DeliveryState, StatusUpdate
from tests.carriers.harness import Case, incoming_tests, query_request, send, sending_tests
from tests.conftest import RunningBridge

# As Vonage sends them (developer.vonage.com/messaging/sms/guides/inbound-sms).
BASE = {
    "msisdn": "447700900001",
    "to": "447700900000",
    "messageId": "0A0000000123ABCD1",
    "text": "P 12 Jane",
    "type": "text",
    "keyword": "P",
    "api-key": "abcd1234",
    "message-timestamp": "2020-01-01 12:00:00",
}
STORED = [
    {
        "sender": "+447700900001",
        "text": "P 12 Jane",
        "external_id": "0A0000000123ABCD1",
        "received_at": 1577880000000,
    }
]

CASES = [
    Case("get-with-query", method="GET", params=BASE, status=204, stored=STORED),
    Case("post-form", data=BASE, status=204, stored=STORED),
    Case("post-json", json=BASE, status=204, stored=STORED),
    Case(
        "malformed JSON is 400",
        content=b"{not json",
        headers={"content-type": "application/json"},
        status=400,
        error="bad_request",
        stored=(),
    ),
]

TestIncoming = incoming_tests("vonage", CASES)


def test_long_sms_parts_are_joined_into_one_message(bridge: RunningBridge) -> None:
    url = bridge.inbound_path("vonage")

    def part(n: int, text: str) -> dict[str, str]:
        return {**BASE, "messageId": f"part{n}", "text": text, "concat": "true",
                "concat-ref": "7", "concat-total": "3", "concat-part": str(n)}  # fmt: skip

    assert bridge.http.post(url, data=part(3, "of it.")).status_code == 204  # out of order
    assert bridge.http.post(url, data=part(1, "P 12 Jane, the first ")).status_code == 204
    assert bridge.http.post(url, data=part(1, "P 12 Jane, the first ")).status_code == 204
    assert bridge.messages() == []  # acknowledged and kept, but not a message yet
    assert bridge.http.post(url, data=part(2, "half and the rest ")).status_code == 204
    [row] = bridge.messages()
    assert row["text"] == "P 12 Jane, the first half and the rest of it."
    assert row["sender"] == "+447700900001"
    [task] = bridge.store.query("SELECT kind, ref FROM tasks WHERE kind = 'submit'")
    assert task["ref"] == row["uuid"]
    # a late retry of a part changes nothing
    assert bridge.http.post(url, data=part(2, "half and the rest ")).status_code == 204
    assert len(bridge.messages()) == 1


def test_duplicate_delivery_is_stored_once(bridge: RunningBridge) -> None:
    url = bridge.inbound_path("vonage")
    bridge.http.get(url, params=BASE).raise_for_status()
    bridge.http.post(url, data=BASE).raise_for_status()
    assert len(bridge.messages()) == 1


# Vonage's own SDK test vectors: params a=1, b=2, timestamp=1461605396, secret "secret".
VECTORS = [
    ("md5hash", "6af838ef94998832dbfc29020b564830"),
    ("md5", "c15c21ced558c93a226c305f58f902f2"),
    ("sha1", "3e19a4e6880fdc2c1426bfd0587c98b9532f0210"),
    ("sha256", "a321e824b9b816be7c3f28859a31749a098713d39f613c80d455bbaffae1cd24"),
    (
        "sha512",
        "812a18f76680fa0fe1b8bd9ee1625466ceb1bd96242e4d050d2cfd9a7b40166c63ed26ec9702"
        "168781b6edcf1633db8ff95af9341701004eec3fcf9550572ee8",
    ),
]


@pytest.mark.parametrize(("method", "expected"), VECTORS)
def test_signature_matches_vonage_vectors(method: str, expected: str) -> None:
    params = {"a": "1", "b": "2", "timestamp": "1461605396"}
    assert vonage.compute_signature(params, "secret", method) == expected
    assert vonage.compute_signature({**params, "sig": "x"}, "secret", method) == expected


def test_ampersands_and_equals_in_values_are_replaced() -> None:
    a = vonage.compute_signature({"text": "a&b=c", "timestamp": "1"}, "s")
    b = vonage.compute_signature({"text": "a_b_c", "timestamp": "1"}, "s")
    assert a == b


def test_signed_webhook_is_accepted_and_a_bad_sig_refused(
    bridge_factory: Callable[..., RunningBridge],
) -> None:
    bridge = bridge_factory(
        SMSBRIDGE_VONAGE_SIGNATURE_SECRET="secret", SMSBRIDGE_VONAGE_SIGNATURE_METHOD="sha256"
    )
    url = bridge.inbound_path("vonage")
    params = {**BASE, "timestamp": "1577880000", "nonce": "9d3b1a"}
    signed = {**params, "sig": vonage.compute_signature(params, "secret", "sha256")}
    assert bridge.http.get(url, params={**signed, "text": "P 99 Mallory"}).status_code == 403
    assert bridge.http.get(url, params=params).status_code == 403  # unsigned
    assert bridge.messages() == []
    assert bridge.http.get(url, params=signed).status_code == 204
    assert bridge.http.post(url, json=signed).status_code == 204  # JSON body, same signature
    assert len(bridge.messages()) == 1


def test_verify_is_skipped_without_a_secret() -> None:
    from datetime import UTC, datetime

    req = WebhookRequest.build(
        "GET", "http://x/", "/", {}, "msisdn=1&messageId=2", b"", datetime.now(UTC)
    )
    vonage.verify(req, CarrierConfig("vonage", {}))
    with pytest.raises(Forbidden):
        vonage.verify(req, CarrierConfig("vonage", {"signature_secret": "s"}))


# -- sending and delivery reports ----------------------------------------------------------------

STATUS_CASES = [
    (
        query_request(
            "msisdn=447700900000&to=MEDIC&messageId=0A01&status=delivered&err-code=0&client-ref=m1"
        ),
        StatusUpdate(
            "vonage", "0A01", DeliveryState.DELIVERED, carrier_status="delivered", ref="m1"
        ),
    ),
    (
        query_request("messageId=0A01&status=expired&err-code=1"),
        StatusUpdate(
            "vonage",
            "0A01",
            DeliveryState.FAILED,
            reason="expired (err-code 1)",
            carrier_status="expired",
        ),
    ),
    (query_request("messageId=0A01&status=unknown"), None),
]

TestSending = sending_tests(
    "vonage",
    bad_credentials={"api_secret": "wrong"},
    missing_settings=[
        ({"api_secret": ""}, "SMSBRIDGE_VONAGE_API_SECRET"),
        ({"sender": ""}, "SMSBRIDGE_VONAGE_SENDER"),
    ],
    status_cases=STATUS_CASES,
)


def test_sends_unicode_type_and_client_ref(
    carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    send("vonage", carriers[1])
    [sent] = sim.sent_by("vonage")
    assert sent.to == "254712345678" and sent.ref == "ref-1"
