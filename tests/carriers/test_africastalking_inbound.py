"""Africa's Talking inbound callbacks: recorded-style payloads -> stored messages."""

from __future__ import annotations

import pytest

# As AT posts them (form-encoded; courier's recorded payloads carry the same fields).
BASE = {
    "linkId": "SampleLinkId123",
    "text": "P 12 Jane",
    "to": "28901",
    "id": "ATXid_a7e3f1d0b9c84d6a",
    "date": "2017-05-03T06:04:45Z",
    "from": "+254712345678",
}

CASES = [
    ("iso date", {}, ("+254712345678", "P 12 Jane", "ATXid_a7e3f1d0b9c84d6a", 1493791485000)),
    (
        "space date",
        {"date": "2017-05-03 06:04:45", "id": "AT2"},
        ("+254712345678", "P 12 Jane", "AT2", 1493791485000),
    ),
    (
        "fractional date",
        {"date": "2017-05-03T06:04:45.123Z", "id": "AT3"},
        ("+254712345678", "P 12 Jane", "AT3", 1493791485123),
    ),
    (
        "no linkId, unicode",
        {"linkId": "", "text": "Mtoto ana homa — 39°", "id": "AT4"},
        ("+254712345678", "Mtoto ana homa — 39°", "AT4", 1493791485000),
    ),
    (
        "muvuku",
        {"text": "1!ANCV!Sam#23#2015", "id": "AT5", "from": "+2547 1234-5678"},
        ("+254712345678", "1!ANCV!Sam#23#2015", "AT5", 1493791485000),
    ),
]


@pytest.mark.parametrize(("label", "overrides", "expected"), CASES, ids=[c[0] for c in CASES])
def test_recorded_payload_is_stored(bridge, label, overrides, expected) -> None:  # type: ignore[no-untyped-def]
    response = bridge.http.post(bridge.inbound_path("africastalking"), data={**BASE, **overrides})
    assert response.status_code == 200, response.text
    [row] = bridge.messages()
    assert (row["sender"], row["text"], row["external_id"], row["received_at"]) == expected
    assert row["carrier"] == "africastalking" and row["recipient"] == "28901"


def test_unreadable_date_falls_back_to_arrival_time(bridge) -> None:  # type: ignore[no-untyped-def]
    bridge.http.post(
        bridge.inbound_path("africastalking"), data={**BASE, "date": "yesterday"}
    ).raise_for_status()
    [row] = bridge.messages()
    assert row["received_at"] == int(bridge.clock() * 1000)


def test_duplicate_delivery_is_stored_once(bridge) -> None:  # type: ignore[no-untyped-def]
    url = bridge.inbound_path("africastalking")
    for _ in range(3):
        assert bridge.http.post(url, data=BASE).status_code == 200
    assert len(bridge.messages()) == 1


@pytest.mark.parametrize("missing", ["from", "id"])
def test_missing_required_field_is_400_and_nothing_stored(bridge, missing) -> None:  # type: ignore[no-untyped-def]
    form = {k: v for k, v in BASE.items() if k != missing}
    response = bridge.http.post(bridge.inbound_path("africastalking"), data=form)
    assert response.status_code == 400
    assert response.json() == {"error": "bad_request", "detail": f"missing field(s): {missing}"}
    assert bridge.messages() == []


def test_wrong_token_is_401_and_nothing_stored(bridge) -> None:  # type: ignore[no-untyped-def]
    response = bridge.http.post("/carriers/africastalking/nope/inbound", data=BASE)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert bridge.messages() == []
