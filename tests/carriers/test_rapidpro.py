"""RapidPro / TextIt: the flow webhook CHT's RapidPro guide configures (harness cases), sending
through the broadcasts API of the RapidPro simulator (smsbridge/carriersim/rapidpro.py), and the
delivery states read back from its messages API, as CHT's own integration polls them."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from smsbridge.carriers import rapidpro
from smsbridge.carriersim import CarrierSim
from smsbridge.errors import AuthFailure, PermanentError, RetryableError
from smsbridge.sms import DeliveryState, StatusUpdate
from tests.carriers.harness import ARRIVAL, Case, config, incoming_tests, send, sending_tests

SAVED = {"saved": 1}
ALICE = "+254712345678"


def stored(sender: str, text: str, external_id: str | None, received: int | str) -> list[dict]:
    return [{"sender": sender, "text": text, "external_id": external_id, "received_at": received}]


CASES = [
    Case(
        "CHT's flow webhook body",
        json={"id": "4c9e0b3a-run-1", "from": ALICE, "content": "P 12 Jane"},
        headers={"Authorization": "Token cht-api-key"},
        response=SAVED,
        stored=stored(ALICE, "P 12 Jane", "4c9e0b3a-run-1", ARRIVAL),
    ),
    Case(
        "tel: URN, text and date",
        json={
            "id": "run-2",
            "from": "tel:+254712345678",
            "text": "hello",
            "date": "2023-11-14T22:13:20.000000Z",
        },
        response=SAVED,
        stored=stored(ALICE, "hello", "run-2", 1700000000000),
    ),
    Case("no content is 400", json={"id": "run-3", "from": ALICE}, status=400, stored=()),
    Case(
        "a number that is not a string is 400",
        json={"id": "run-4", "from": 254712345678, "content": "x"},
        status=400,
        stored=(),
    ),
]

TestIncoming = incoming_tests("rapidpro", CASES, secrets=["cht-api-key"])

TestSending = sending_tests(
    "rapidpro",
    bad_credentials={"api_token": "wrong"},
    missing_settings=[
        ({"api_url": ""}, "SMSBRIDGE_RAPIDPRO_API_URL"),
        ({"api_token": ""}, "SMSBRIDGE_RAPIDPRO_API_TOKEN"),
    ],
    status_cases=[],  # RapidPro calls no one back: see the polling tests below (and the
    # service's periodic poll: tests/outbound/test_statuspoll.py)
)


def poll(url: str, external_id: str, **override: str) -> list[StatusUpdate]:
    async def go() -> list[StatusUpdate]:
        async with httpx.AsyncClient(timeout=5) as http:
            return await rapidpro.poll_status(
                http, config("rapidpro", url, **override), [external_id]
            )

    return asyncio.run(go())


def test_the_broadcast_carries_the_urn_and_text_and_answers_queued(
    carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    result = send("rapidpro", carriers[1])
    assert result.carrier_status == "queued" and result.state is DeliveryState.SENT
    broadcast = sim.rapidpro_broadcasts[int(result.external_id or "0")]
    assert (broadcast.urn, broadcast.text) == ("tel:+254712345678", "Habari 😀")


@pytest.mark.parametrize(
    ("final", "states"),
    [
        ("delivered", ["queued", "wired", "sent", "delivered", "delivered"]),
        ("failed", ["queued", "wired", "sent", "failed", "failed"]),
    ],
)
def test_states_are_read_back_from_messages_json(
    final: str, states: list[str], carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    sim.configure("rapidpro", final=final, reports=True)  # `sim` starts with reports off
    external_id = send("rapidpro", carriers[1]).external_id or ""
    seen = [poll(carriers[1], external_id) for _ in states]
    assert [u.carrier_status for [u] in seen] == states
    assert {u.external_id for [u] in seen} == {external_id}
    last = seen[-1][0]
    if final == "delivered":
        assert last.state is DeliveryState.DELIVERED and last.reason is None
    else:
        assert last.state is DeliveryState.FAILED and last.reason == "rapidpro: failed"
    assert [u.state for [u] in seen[:3]] == [DeliveryState.SENT] * 3


def test_an_unknown_broadcast_has_no_state_and_a_bad_token_is_an_auth_failure(
    carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    assert poll(carriers[1], "999") == []
    with pytest.raises(AuthFailure):
        poll(carriers[1], "999", api_token="wrong")


def test_send_errors_name_what_rapidpro_said(
    carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    sim.fail_next("rapidpro", "invalid_number")
    with pytest.raises(PermanentError) as invalid:
        send("rapidpro", carriers[1])
    assert "invalid urns" in invalid.value.detail
    sim.fail_next("rapidpro", "throttle")
    with pytest.raises(RetryableError) as throttled:
        send("rapidpro", carriers[1])
    assert throttled.value.retry_after == 1.0 and "throttled" in throttled.value.detail
