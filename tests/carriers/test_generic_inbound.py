"""The generic HTTP carrier: form or JSON, configurable field names; de-duplication by id, or
without an id by sender + text within SMSBRIDGE_DEDUP_WINDOW."""

from __future__ import annotations

import pytest

CASES = [
    (
        "form with id",
        "form",
        {
            "from": "+254712345678",
            "to": "5000",
            "text": "P 12 Jane",
            "id": "g-1",
            "date": "1700000000000",
        },
        ("+254712345678", "P 12 Jane", "g-1", 1700000000000),
    ),
    (
        "json with id",
        "json",
        {
            "from": "+254712345678",
            "text": "hello",
            "id": "g-2",
            "date": "2023-11-14T22:13:20+00:00",
        },
        ("+254712345678", "hello", "g-2", 1700000000000),
    ),
    (
        "no id, 00 prefix",
        "form",
        {"from": "00254712345678", "text": "hi there"},
        ("+254712345678", "hi there", None, None),
    ),
    (
        "json numbers",
        "json",
        {"from": "+254712345678", "text": "x", "id": 42},
        ("+254712345678", "x", "42", None),
    ),
]


@pytest.mark.parametrize(("label", "kind", "payload", "expected"), CASES, ids=[c[0] for c in CASES])
def test_payload_is_stored(bridge, label, kind, payload, expected) -> None:  # type: ignore[no-untyped-def]
    url = bridge.inbound_path("generic")
    response = (
        bridge.http.post(url, json=payload)
        if kind == "json"
        else bridge.http.post(url, data=payload)
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "received": 1}
    [row] = bridge.messages()
    sender, text, external_id, received = expected
    assert (row["sender"], row["text"], row["external_id"]) == (sender, text, external_id)
    assert row["received_at"] == (received or int(bridge.clock() * 1000))


def test_get_with_query_is_accepted(bridge) -> None:  # type: ignore[no-untyped-def]
    url = bridge.inbound_path("generic")
    assert (
        bridge.http.get(url, params={"from": "+1555", "text": "x", "id": "k1"}).status_code == 200
    )
    assert len(bridge.messages()) == 1


def test_without_id_duplicates_within_the_window_are_stored_once(bridge) -> None:  # type: ignore[no-untyped-def]
    url = bridge.inbound_path("generic")
    payload = {"from": "+254712345678", "text": "P 12 Jane"}
    for _ in range(3):
        bridge.http.post(url, data=payload).raise_for_status()
    assert len(bridge.messages()) == 1
    bridge.http.post(url, data={**payload, "text": "P 13 Jane"}).raise_for_status()
    assert len(bridge.messages()) == 2
    bridge.clock.advance(bridge.settings.dedup_window + 1)
    bridge.http.post(url, data=payload).raise_for_status()  # the same text later: a new SMS
    assert len(bridge.messages()) == 3


def test_with_ids_identical_texts_are_distinct_messages(bridge) -> None:  # type: ignore[no-untyped-def]
    url = bridge.inbound_path("generic")
    for n in range(3):
        bridge.http.post(
            url, data={"from": "+1555", "text": "same", "id": f"i{n}"}
        ).raise_for_status()
    assert len(bridge.messages()) == 3


def test_field_names_are_configurable(bridge_factory) -> None:  # type: ignore[no-untyped-def]
    bridge = bridge_factory(
        SMSBRIDGE_GENERIC_FROM_FIELD="sender",
        SMSBRIDGE_GENERIC_TEXT_FIELD="content",
        SMSBRIDGE_GENERIC_REPLY_BODY="ACK/Jasmin",
    )
    url = bridge.inbound_path("generic")
    response = bridge.http.post(
        url, data={"sender": "+1555", "content": "jasmin says hi", "id": "j1"}
    )
    assert response.status_code == 200 and response.text == "ACK/Jasmin"
    [row] = bridge.messages()
    assert (row["sender"], row["text"]) == ("+1555", "jasmin says hi")


def test_missing_sender_is_400(bridge) -> None:  # type: ignore[no-untyped-def]
    response = bridge.http.post(bridge.inbound_path("generic"), data={"text": "x"})
    assert response.status_code == 400
    assert bridge.messages() == []
