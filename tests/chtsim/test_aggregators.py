"""Simulator checklist item 21: CHT's Africa's Talking and RapidPro endpoints, and credentials."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from smsbridge.chtsim import ChtSim

JSON = {"Accept": "application/json"}
AT_IN = "/api/v1/sms/africastalking/incoming-messages"
AT_DLR = "/api/v1/sms/africastalking/delivery-reports"
RP_IN = "/api/v2/sms/rapidpro/incoming-messages"


@pytest.fixture
def cht(chtsim: tuple[ChtSim, str]) -> Iterator[tuple[ChtSim, httpx.Client]]:
    sim, url = chtsim
    with httpx.Client(base_url=url, headers=JSON) as http:
        yield sim, http


def test_credentials_need_a_db_admin(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.add_user("gateway", "gw-pass", roles=["gateway"])
    denied = http.put(
        "/api/v1/credentials/rapidpro:incoming", content=b"s", auth=("gateway", "gw-pass")
    )
    assert (denied.status_code, denied.json()) == (
        403,
        {"code": 403, "error": "Insufficient permissions"},
    )
    http.put("/api/v1/credentials/rapidpro:incoming", content=b"s3", auth=("admin", "pass"))
    assert sim.state.credentials["rapidpro:incoming"] == "s3"


def test_africastalking_incoming_key_and_saved_count(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    message = {
        "id": "ATXid_1",
        "from": "+254711000111",
        "text": "hello",
        "to": "40100",
        "date": "2026-01-01 10:00:00",
        "linkId": "x",
    }
    assert http.post(AT_IN, data=message).json() == {
        "code": 403,
        "error": "No incoming key configured",
    }
    sim.set_credential("africastalking.com:incoming", "k3y")
    assert http.post(AT_IN + "?key=nope", data=message).json()["error"] == "Incorrect token"
    assert http.post(AT_IN + "?key=k3y", data=message).json() == {"saved": 1}
    assert http.post(AT_IN + "?key=k3y", data=message).json() == {"saved": 0}
    assert http.post(AT_IN + "?key=k3y", data={"id": "2", "from": "+1"}).json() == {"saved": 0}
    (record,) = sim.records()
    assert record["sms_message"]["gateway_ref"] == "ATXid_1"


def test_africastalking_delivery_reports(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.set_credential("africastalking.com:incoming", "k3y")
    mid = sim.add_outgoing("+254711000111", "hi", state="pending")
    sim.state.find_task(mid)[1]["gateway_ref"] = "ATPid_9"  # type: ignore[index]
    sim.state.index_doc(sim.state.find_task(mid)[0])  # type: ignore[index]
    assert http.post(AT_DLR + "?key=k3y", data={"id": "ATPid_9", "status": "Submitted"}).json() == {
        "saved": 1
    }
    failed = http.post(
        AT_DLR + "?key=k3y", data={"id": "ATPid_9", "status": "Failed", "failureReason": "Absent"}
    )
    assert failed.json() == {"saved": 1}
    message = sim.message(mid)
    assert [h["state"] for h in message["state_history"]] == ["pending", "sent", "failed"]
    assert (message["state_details"], message["gateway_ref"]) == ("Absent", "ATPid_9")
    unknown = http.post(AT_DLR + "?key=k3y", data={"id": "ATPid_9", "status": "Odd"})
    assert unknown.status_code == 400
    assert unknown.json()["error"] == (
        'Unknown status code: "Odd", gateway message reference: "ATPid_9"'
    )


def test_rapidpro_incoming(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    body = {"id": "run-1", "from": "+254711000111", "content": "hello"}
    assert http.post(RP_IN, json=body).json()["error"] == "Missing authorization token"
    token = {"Authorization": "Token s3"}
    assert http.post(RP_IN, json=body, headers=token).json()["error"] == (
        "No incoming key configured"
    )
    sim.set_credential("rapidpro:incoming", "s3")
    assert http.post(RP_IN, json=body, headers={"Authorization": "Token x"}).status_code == 403
    assert http.post(RP_IN, json=body, headers=token).json() == {"saved": 1}
    again = http.post("/api/v1/sms/radpidpro/incoming-messages", json=body, headers=token)
    assert (again.status_code, again.json()["error"]) == (400, "Message was not saved")
    assert len(sim.records()) == 1
