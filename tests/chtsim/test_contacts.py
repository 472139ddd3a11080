"""Simulator checklist item 16: contacts-by-phone."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from smsbridge.chtsim import ChtSim

JSON = {"Accept": "application/json"}
GATEWAY = ("gateway", "gw-pass")
BAD = {
    "error": "bad_request",
    "reason": "`phone` parameter is required and must be a valid phone number",
}


@pytest.fixture
def cht(chtsim: tuple[ChtSim, str]) -> Iterator[tuple[ChtSim, httpx.Client]]:
    sim, url = chtsim
    sim.add_user(*GATEWAY, roles=["gateway"])
    sim.set_settings({"default_country_code": 64}, merge=True)
    sim.add_contact({"_id": "district", "type": "district_hospital", "name": "Big Parent Hospital"})
    sim.add_contact({"_id": "hc1", "type": "health_center", "name": "hc1", "parent": "district"})
    sim.add_contact(
        {"_id": "clinic1", "type": "clinic", "name": "clinic1", "parent": "hc1", "contact": "chw1"}
    )
    sim.add_contact(
        {
            "_id": "chw1",
            "type": "person",
            "name": "chw1",
            "phone": "+64275552636",
            "parent": "clinic1",
        }
    )
    with httpx.Client(base_url=url, auth=GATEWAY, headers=JSON) as http:
        yield sim, http


@pytest.mark.parametrize("phone", ["0275552636", "+ 6 4 - 02 7.-.5.(55((2636.", "+640275552636"])
def test_lookup_normalises_like_cht(cht: tuple[ChtSim, httpx.Client], phone: str) -> None:
    answer = cht[1].get("/api/v1/contacts-by-phone", params={"phone": phone})
    assert answer.status_code == 200
    assert [d["_id"] for d in answer.json()["docs"]] == ["chw1"]


def test_answer_is_hydrated(cht: tuple[ChtSim, httpx.Client]) -> None:
    (doc,) = (
        cht[1].get("/api/v1/contacts-by-phone", params={"phone": "+64275552636"}).json()["docs"]
    )
    clinic = doc["parent"]
    assert clinic["name"] == "clinic1"
    assert clinic["contact"]["_id"] == "chw1" and clinic["contact"]["phone"] == "+64275552636"
    assert clinic["contact"]["parent"] == {
        "_id": "clinic1",
        "parent": {"_id": "hc1", "parent": {"_id": "district"}},
    }
    assert clinic["parent"]["name"] == "hc1"
    assert clinic["parent"]["parent"]["name"] == "Big Parent Hospital"


def test_post_body_and_query_wins(cht: tuple[ChtSim, httpx.Client]) -> None:
    _sim, http = cht
    assert http.post("/api/v1/contacts-by-phone", json={"phone": "0275552636"}).status_code == 200
    answer = http.post("/api/v1/contacts-by-phone?phone=0275550000", json={"phone": "0275552636"})
    assert answer.status_code == 404


def test_all_matches_are_returned_and_only_contact_types(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.add_contact({"_id": "chw2", "type": "person", "phone": "+64275552636", "parent": "hc1"})
    sim.add_contact({"_id": "note", "type": "data_record", "phone": "+64275552636"})
    sim.add_contact({"_id": "raw", "type": "person", "phone": "0275552636"})  # not E.164
    answer = http.get("/api/v1/contacts-by-phone", params={"phone": "0275552636"})
    assert [d["_id"] for d in answer.json()["docs"]] == ["chw1", "chw2"]


@pytest.mark.parametrize("params", [{}, {"phone": "abc"}, {"phone": "12"}, {"phone": "1-800-CALL"}])
def test_missing_or_invalid_phone_is_400(
    cht: tuple[ChtSim, httpx.Client], params: dict[str, str]
) -> None:
    answer = cht[1].get("/api/v1/contacts-by-phone", params=params)
    assert (answer.status_code, answer.json()) == (400, BAD)


def test_no_match_is_404(cht: tuple[ChtSim, httpx.Client]) -> None:
    answer = cht[1].get("/api/v1/contacts-by-phone", params={"phone": "+64275550000"})
    assert (answer.status_code, answer.json()) == (
        404,
        {"error": "not_found", "reason": "no matches found"},
    )


def test_phone_validation_setting(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.add_contact({"_id": "odd", "type": "person", "phone": "+64123"})
    assert http.get("/api/v1/contacts-by-phone", params={"phone": "+64123"}).status_code == 400
    sim.set_settings({"phone_validation": "none"}, merge=True)
    assert http.get("/api/v1/contacts-by-phone", params={"phone": "+64123"}).status_code == 200


def test_domestic_number_without_country_code_is_invalid(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    settings = dict(sim.state.settings)
    del settings["default_country_code"]
    sim.set_settings(settings)
    assert http.get("/api/v1/contacts-by-phone", params={"phone": "0275552636"}).status_code == 400
