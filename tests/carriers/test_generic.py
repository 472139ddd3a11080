"""The generic HTTP carrier: form or JSON, configurable field names; de-duplication by id, or
without an id by sender + text within SMSBRIDGE_DEDUP_WINDOW; its delivery reports name the
message by the gateway's `id`, by our `ref` (the `id` we sent), or both. Sending through the
carrier simulator. Driven by tests/carriers/harness.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from smsbridge.outbound import delivery
from smsbridge.outbound import messages as outgoing
from smsbridge.sms import DeliveryState, StatusUpdate
from tests.carriers.harness import ARRIVAL, Case, form_request, incoming_tests, sending_tests
from tests.conftest import RunningBridge

ACCEPTED = {"ok": True, "received": 1}


def stored(sender: str, text: str, external_id: str | None, received: int | str) -> list[dict]:
    return [{"sender": sender, "text": text, "external_id": external_id, "received_at": received}]


CASES = [
    Case(
        "form with id",
        data={
            "from": "+254712345678",
            "to": "5000",
            "text": "P 12 Jane",
            "id": "g-1",
            "date": "1700000000000",
        },
        response=ACCEPTED,
        stored=stored("+254712345678", "P 12 Jane", "g-1", 1700000000000),
    ),
    Case(
        "json with id",
        json={
            "from": "+254712345678",
            "text": "hello",
            "id": "g-2",
            "date": "2023-11-14T22:13:20+00:00",
        },
        response=ACCEPTED,
        stored=stored("+254712345678", "hello", "g-2", 1700000000000),
    ),
    Case(
        "no id, 00 prefix",
        data={"from": "00254712345678", "text": "hi there"},
        response=ACCEPTED,
        stored=stored("+254712345678", "hi there", None, ARRIVAL),
    ),
    Case(
        "json numbers",
        json={"from": "+254712345678", "text": "x", "id": 42},
        response=ACCEPTED,
        stored=stored("+254712345678", "x", "42", ARRIVAL),
    ),
    Case(
        "GET with a query",
        method="GET",
        params={"from": "+1555", "text": "x", "id": "k1"},
        stored=stored("+1555", "x", "k1", ARRIVAL),
    ),
    Case("missing sender is 400", data={"text": "x"}, status=400, stored=()),
]

TestIncoming = incoming_tests("generic", CASES)


def test_without_id_duplicates_within_the_window_are_stored_once(bridge: RunningBridge) -> None:
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


def test_with_ids_identical_texts_are_distinct_messages(bridge: RunningBridge) -> None:
    url = bridge.inbound_path("generic")
    for n in range(3):
        bridge.http.post(
            url, data={"from": "+1555", "text": "same", "id": f"i{n}"}
        ).raise_for_status()
    assert len(bridge.messages()) == 3


def test_field_names_are_configurable(bridge_factory: Callable[..., RunningBridge]) -> None:
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


# -- delivery reports on the bridge --------------------------------------------------------------


def _status_path(bridge: RunningBridge) -> str:
    return bridge.inbound_path("generic").replace("/inbound", "/status")


def _queued(bridge: RunningBridge, ref: str) -> None:
    """An outgoing SMS whose send through the generic carrier was tried, its answer not heard."""
    now = bridge.clock()

    def job(conn: Any) -> None:
        outgoing.insert_in(conn, ref, "+254712345678", "hi", now)
        delivery.tried_in(conn, ref, "generic", now)

    bridge.store.write_sync(job)


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_report_naming_only_our_ref_is_matched(bridge: RunningBridge, method: str) -> None:
    _queued(bridge, f"ref-{method}")
    fields = {"ref": f"ref-{method}", "status": "delivered"}
    if method == "POST":
        response = bridge.http.post(_status_path(bridge), data=fields)
    else:
        response = bridge.http.get(_status_path(bridge), params=fields)
    assert response.status_code == 200, response.text
    message = outgoing.get(bridge.store, f"ref-{method}")
    assert message is not None and message.state is DeliveryState.DELIVERED


def test_a_report_naming_neither_id_nor_ref_is_400(bridge: RunningBridge) -> None:
    def reports() -> int:
        return int(bridge.store.query("SELECT COUNT(*) FROM delivery_reports")[0][0])

    before = reports()
    response = bridge.http.post(_status_path(bridge), data={"status": "delivered"})
    assert response.status_code == 400
    assert response.json() == {"error": "bad_request", "detail": "missing field(s): id or ref"}
    assert reports() == before


# -- sending and parse_status ---------------------------------------------------------------------

STATUS_CASES = [
    (
        form_request(id="g1", status="8"),
        StatusUpdate("generic", "g1", DeliveryState.SENT, carrier_status="8"),
    ),
    (
        form_request(id="g1", status="failed", reason="absent subscriber", ref="m1"),
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

TestSending = sending_tests(
    "generic",
    bad_credentials={"send_token": "wrong"},
    missing_settings=[({"send_url": ""}, "SMSBRIDGE_GENERIC_SEND_URL")],
    status_cases=STATUS_CASES,
)
