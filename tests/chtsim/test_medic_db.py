"""The medic database reads CHT passes through to an online user (smsbridge/chtsim/medic_db.py):
documents, `_all_docs`, and the messages_by_gateway_ref view, which emits the gateway_ref of
incoming data records (`sms_message.gateway_ref`, value its uuid) and of outgoing tasks that
hold messages (value each message's uuid)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from smsbridge.chtsim import ChtSim
from smsbridge.chtsim.medic_db import GATEWAY_REF_VIEW

JSON = {"Accept": "application/json"}
GATEWAY = ("gateway", "gw-pass")
FORM = {"meta": {"code": "T"}, "fields": {"n": {"type": "string", "labels": {"tiny": "N"}}}}


@pytest.fixture
def cht(chtsim: tuple[ChtSim, str]) -> Iterator[tuple[ChtSim, httpx.Client]]:
    sim, url = chtsim
    sim.add_user(*GATEWAY, roles=["gateway"])
    sim.add_user("chw", "chw-pass", roles=["chw"])  # an offline role
    sim.set_forms({"T": FORM})
    with httpx.Client(base_url=url, auth=GATEWAY, headers=JSON) as http:
        yield sim, http


def view(http: httpx.Client, key: Any, **params: str) -> dict[str, Any]:
    answer = http.get(GATEWAY_REF_VIEW, params={"key": json.dumps(key), **params})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_view_lists_a_record_under_its_json_gateway_ref(
    cht: tuple[ChtSim, httpx.Client],
) -> None:
    _sim, http = cht
    created = http.post("/api/v2/records", json={"_meta": {"form": "T", "gateway_ref": "g-1"}})
    doc_id = created.json()["id"]
    assert view(http, "g-1")["rows"] == [{"id": doc_id, "key": "g-1", "value": None}]
    assert view(http, "g-2")["rows"] == []
    [row] = view(http, "g-1", include_docs="true")["rows"]
    assert row["doc"]["_id"] == doc_id and row["doc"]["form"] == "T"


def test_the_view_lists_a_gateway_message_under_its_id(cht: tuple[ChtSim, httpx.Client]) -> None:
    _sim, http = cht
    sms = {"id": "m-1", "from": "+254700000001", "content": "hello"}
    http.post("/api/sms", json={"messages": [sms]})
    [row] = view(http, "m-1")["rows"]
    assert row["key"] == "m-1"


def test_the_view_lists_outgoing_tasks_by_gateway_ref_per_message(
    cht: tuple[ChtSim, httpx.Client],
) -> None:
    sim, http = cht
    doc = sim.state.put_doc(
        {
            "type": "data_record",
            "tasks": [
                {"gateway_ref": "out-1", "messages": [{"uuid": "u1"}, {"uuid": "u2"}]},
                {"gateway_ref": "", "messages": [{"uuid": "u3"}]},  # a falsy ref: nothing
                {"gateway_ref": "out-2"},  # no messages: nothing
            ],
            "scheduled_tasks": [{"gateway_ref": "out-1", "messages": [{"uuid": "u4"}]}],
        }
    )
    rows = view(http, "out-1")["rows"]
    assert sorted(r["value"] for r in rows) == ["u1", "u2", "u4"]
    assert {r["id"] for r in rows} == {doc["_id"]}
    assert view(http, "out-2")["rows"] == []


def test_views_are_refused_to_offline_users_and_anonymous_callers(
    cht: tuple[ChtSim, httpx.Client],
) -> None:
    _sim, http = cht
    offline = http.get(GATEWAY_REF_VIEW, params={"key": '"x"'}, auth=("chw", "chw-pass"))
    assert offline.status_code == 403
    assert offline.json()["error"] == "forbidden"
    anonymous = httpx.get(str(http.base_url).rstrip("/") + GATEWAY_REF_VIEW, headers=JSON)
    assert anonymous.status_code == 401


def test_all_docs_over_a_range_with_the_docs(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.set_translations({"fr": {"a": "b"}, "sw": {"a": "c"}})
    params = {"startkey": '"messages-"', "endkey": '"messages-\ufff0"', "include_docs": "true"}
    rows = http.get("/medic/_all_docs", params=params).json()["rows"]
    assert [r["id"] for r in rows] == ["messages-en", "messages-fr", "messages-sw"]
    assert rows[1]["doc"]["generic"] == {"a": "b"} and rows[1]["value"]["rev"].startswith("1-")
    params["endkey"] = '"messages-fr"'
    params["inclusive_end"] = "false"
    assert [r["id"] for r in http.get("/medic/_all_docs", params=params).json()["rows"]] == [
        "messages-en"
    ]
    assert (
        "doc" not in http.get("/medic/_all_docs", params={"key": '"messages-fr"'}).json()["rows"][0]
    )


def test_a_document_or_couchdbs_not_found(cht: tuple[ChtSim, httpx.Client]) -> None:
    _sim, http = cht
    created = http.post("/api/v2/records", json={"_meta": {"form": "T"}, "n": "x"})
    doc = http.get(f"/medic/{created.json()['id']}").json()
    assert doc["fields"] == {"n": "x"}
    missing = http.get("/medic/no-such-doc")
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "not_found", "reason": "missing"},
    )
    # an offline user reads the translations (replicated to everyone), not the records
    offline = ("chw", "chw-pass")
    assert http.get(f"/medic/{created.json()['id']}", auth=offline).status_code == 404
    assert http.get("/medic/messages-en", auth=offline).json()["code"] == "en"
