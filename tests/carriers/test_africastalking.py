"""Africa's Talking: inbound callbacks (recorded-style payloads -> stored messages), sending
through the carrier simulator, and its delivery reports. Driven by tests/carriers/harness.py."""

from __future__ import annotations

from smsbridge.sms import DeliveryState, StatusUpdate
from tests.carriers.harness import (
    ARRIVAL,
    Case,
    form_request,
    incoming_tests,
    sending_tests,
)
from tests.conftest import RunningBridge

# As AT posts them (form-encoded; courier's recorded payloads carry the same fields).
BASE = {
    "linkId": "SampleLinkId123",
    "text": "P 12 Jane",
    "to": "28901",
    "id": "ATXid_a7e3f1d0b9c84d6a",
    "date": "2017-05-03T06:04:45Z",
    "from": "+254712345678",
}


def stored(sender: str, text: str, external_id: str, received_at: int | str) -> dict[str, object]:
    return {
        "sender": sender,
        "text": text,
        "external_id": external_id,
        "received_at": received_at,
        "carrier": "africastalking",
        "recipient": "28901",
    }


def missing(field: str) -> Case:
    return Case(
        f"missing {field}",
        data={k: v for k, v in BASE.items() if k != field},
        status=400,
        response={"error": "bad_request", "detail": f"missing field(s): {field}"},
        stored=(),
    )


CASES = [
    Case(
        "iso date",
        data=BASE,
        stored=[stored("+254712345678", "P 12 Jane", "ATXid_a7e3f1d0b9c84d6a", 1493791485000)],
    ),
    Case(
        "space date",
        data={**BASE, "date": "2017-05-03 06:04:45", "id": "AT2"},
        stored=[stored("+254712345678", "P 12 Jane", "AT2", 1493791485000)],
    ),
    Case(
        "fractional date",
        data={**BASE, "date": "2017-05-03T06:04:45.123Z", "id": "AT3"},
        stored=[stored("+254712345678", "P 12 Jane", "AT3", 1493791485123)],
    ),
    Case(
        "no linkId, unicode",
        data={**BASE, "linkId": "", "text": "Mtoto ana homa — 39°", "id": "AT4"},
        stored=[stored("+254712345678", "Mtoto ana homa — 39°", "AT4", 1493791485000)],
    ),
    Case(
        "muvuku",
        data={**BASE, "text": "1!ANCV!Sam#23#2015", "id": "AT5", "from": "+2547 1234-5678"},
        stored=[stored("+254712345678", "1!ANCV!Sam#23#2015", "AT5", 1493791485000)],
    ),
    Case(  # a wrong date must not lose the SMS
        "unreadable date falls back to arrival time",
        data={**BASE, "date": "yesterday", "id": "AT6"},
        stored=[stored("+254712345678", "P 12 Jane", "AT6", ARRIVAL)],
    ),
    missing("from"),
    missing("id"),
]

TestIncoming = incoming_tests("africastalking", CASES)


def test_duplicate_delivery_is_stored_once(bridge: RunningBridge) -> None:
    url = bridge.inbound_path("africastalking")
    for _ in range(3):
        assert bridge.http.post(url, data=BASE).status_code == 200
    assert len(bridge.messages()) == 1


STATUS_CASES = [
    (
        form_request(id="ATXid_1", status="Success", phoneNumber="+254711", networkCode="63902"),
        StatusUpdate(
            "africastalking", "ATXid_1", DeliveryState.DELIVERED, carrier_status="Success"
        ),
    ),
    (
        form_request(id="ATXid_1", status="Buffered"),
        StatusUpdate("africastalking", "ATXid_1", DeliveryState.SENT, carrier_status="Buffered"),
    ),
    (
        form_request(id="ATXid_1", status="Failed", failureReason="InsufficientCredit"),
        StatusUpdate(
            "africastalking",
            "ATXid_1",
            DeliveryState.FAILED,
            reason="InsufficientCredit",
            carrier_status="Failed",
        ),
    ),
    (
        form_request(id="ATXid_1", status="Rejected"),
        StatusUpdate(
            "africastalking",
            "ATXid_1",
            DeliveryState.FAILED,
            reason="Rejected",
            carrier_status="Rejected",
        ),
    ),
]

TestSending = sending_tests(
    "africastalking",
    bad_credentials={"api_key": "wrong"},
    missing_settings=[({"api_key": ""}, "SMSBRIDGE_AFRICASTALKING_API_KEY")],
    status_cases=STATUS_CASES,
)
