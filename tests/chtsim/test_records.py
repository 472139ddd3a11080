"""Simulator checklist items 14-15: the records endpoints at the HTTP level (the field-level
semantics are covered by tests/test_vectors_records.py) and update_clinics."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from smsbridge.chtsim import ChtSim

JSON = {"Accept": "application/json"}
GATEWAY = ("gateway", "gw-pass")
FORM = {
    "meta": {"code": "TEST"},
    "fields": {
        "some_data": {"type": "string", "required": True, "labels": {"tiny": "SD"}},
        "a_number": {"type": "integer", "required": True, "labels": {"tiny": "N"}},
        "a_boolean": {"type": "boolean", "labels": {"tiny": "B"}},
        "an_optional_date": {"type": "date", "labels": {"tiny": "D"}},
    },
}


@pytest.fixture
def cht(chtsim: tuple[ChtSim, str]) -> Iterator[tuple[ChtSim, httpx.Client]]:
    sim, url = chtsim
    sim.add_user(*GATEWAY, roles=["gateway"])
    sim.set_settings({"default_country_code": 44, "locale": "en"}, merge=True)
    sim.set_forms({"TEST": FORM})
    with httpx.Client(base_url=url, auth=GATEWAY, headers=JSON) as http:
        yield sim, http


@pytest.mark.parametrize("version", [1, 2])
def test_urlencoded_sms_is_parsed(cht: tuple[ChtSim, httpx.Client], version: int) -> None:
    sim, http = cht
    answer = http.post(
        f"/api/v{version}/records",
        data={
            "message": "test hello 42",
            "from": "07765902000",
            "sent_timestamp": "1700000000000",
            "gateway_ref": "ref-1",
        },
    )
    assert answer.status_code == 200
    record = sim.record(answer.json()["id"])
    assert record["form"] == "TEST"
    assert record["from"] == "+447765902000"
    assert record["reported_date"] == 1700000000000
    assert record["fields"]["some_data"] == "hello"
    assert record["sms_message"]["gateway_ref"] == "ref-1"


def test_v1_takes_the_locale_query_and_v2_ignores_it(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.set_translations({"fr": {"sys.missing_fields": "Champs manquants: {{fields}}."}})
    for version, expected in (
        (1, "Champs manquants: a_number."),
        (2, "Missing or invalid fields: a_number."),
    ):
        answer = http.post(
            f"/api/v{version}/records?locale=fr",
            data={"message": "TEST hello", "from": "+447765902000"},
        )
        record = sim.record(answer.json()["id"])
        assert record["errors"] == [{"code": "sys.missing_fields", "message": expected}]


def test_json_form_lowercases_and_converts(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    answer = http.post(
        "/api/v2/records",
        json={
            "_meta": {"form": "test", "from": "+447765902000", "reported_date": "2018-11-10"},
            "some_data": "hello",
            "a_number": 42,
            "a_boolean": 1,
            "an_optional_date": "2018-11-10",
        },
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    record = sim.record(answer.json()["id"])
    assert record["fields"] == {
        "some_data": "hello",
        "a_number": 42,
        "a_boolean": True,
        "an_optional_date": 1541808000000,
    }
    assert record["reported_date"] == 1541808000000
    assert record["sms_message"]["form"] == "TEST"


@pytest.mark.parametrize(
    ("data", "details"),
    [
        ({"message": "x"}, "Missing required value: from"),
        ({"from": "+447765902000"}, "Missing required field: message"),
    ],
)
def test_missing_request_fields_are_500_with_details(
    cht: tuple[ChtSim, httpx.Client], data: dict[str, str], details: str
) -> None:
    answer = cht[1].post("/api/v2/records", data=data)
    assert answer.status_code == 500
    assert answer.json() == {"code": 500, "error": "Server error", "details": details}


def test_unsupported_content_type_is_500_without_details(cht: tuple[ChtSim, httpx.Client]) -> None:
    answer = cht[1].post(
        "/api/v2/records", content=b"message=x", headers={"Content-Type": "text/plain"}
    )
    assert (answer.status_code, answer.json()) == (500, {"code": 500, "error": "Server error"})


def test_field_errors_are_stored_not_returned(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    answer = http.post("/api/v2/records", json={"_meta": {"form": "TEST"}, "a_number": "x"})
    assert answer.status_code == 200
    errors = sim.record(answer.json()["id"])["errors"]
    assert [e["code"] for e in errors] == ["sys.incorrect_type", "sys.missing_fields"]


def test_records_need_can_create_records(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.add_user("viewer", "v-pass", roles=["chw"])
    answer = http.post(
        "/api/v2/records", json={"_meta": {"form": "TEST"}}, auth=("viewer", "v-pass")
    )
    assert answer.status_code == 403
    assert http.post("/api/v2/records", json={}, auth=("x", "y")).status_code == 401


def test_records_are_not_idempotent(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    body = {"_meta": {"form": "TEST"}, "some_data": "a", "a_number": 1}
    ids = {http.post("/api/v2/records", json=body).json()["id"] for _ in range(3)}
    assert len(ids) == 3 and len(sim.records()) == 3


# 15. update_clinics -------------------------------------------------------------------------


def test_update_clinics_links_the_sender_or_replies(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.set_settings({"transitions": {"update_clinics": True}}, merge=True)
    sim.add_contact({"_id": "hc", "type": "health_center", "name": "HC"})
    sim.add_contact({"_id": "chw", "type": "person", "phone": "+447765902000", "parent": "hc"})
    known = http.post("/api/v2/records", data={"message": "TEST a 1", "from": "07765902000"})
    record = sim.record(known.json()["id"])
    assert record["contact"] == {"_id": "chw", "parent": {"_id": "hc"}}
    assert record["errors"] == [] and record["tasks"] == []

    unknown = http.post("/api/v2/records", data={"message": "TEST a 1", "from": "+447700900123"})
    record = sim.record(unknown.json()["id"])
    assert record["errors"] == [
        {"code": "sys.facility_not_found", "message": "Facility not found."}
    ]
    (task,) = record["tasks"]
    assert task["state"] == "pending"
    assert task["messages"][0]["to"] == "+447700900123"
    assert task["messages"][0]["message"] == "Facility not found."

    sim.set_forms({"TEST": {**FORM, "public_form": True}})
    public = http.post("/api/v2/records", data={"message": "TEST a 1", "from": "+447700900123"})
    record = sim.record(public.json()["id"])
    assert [e["code"] for e in record["errors"]] == ["sys.facility_not_found"]
    assert record["tasks"] == []


def test_replies_to_a_denied_number_are_denied(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.set_settings(
        {"outgoing_deny_list": "+4477009", "transitions": {"update_clinics": True}}, merge=True
    )
    answer = http.post("/api/v2/records", data={"message": "TEST a 1", "from": "+447700900123"})
    assert sim.record(answer.json()["id"])["tasks"][0]["state"] == "denied"
