"""Simulator checklist items 17-19: settings, forms and monitoring."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from smsbridge.chtsim import ChtSim

JSON = {"Accept": "application/json"}
GATEWAY = ("gateway", "gw-pass")


@pytest.fixture
def cht(chtsim: tuple[ChtSim, str]) -> Iterator[tuple[ChtSim, httpx.Client]]:
    sim, url = chtsim
    sim.add_user(*GATEWAY, roles=["gateway"])
    with httpx.Client(base_url=url, headers=JSON) as http:
        yield sim, http


# 17. settings ------------------------------------------------------------------------------


def test_settings_are_settable_and_served_to_any_user(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.add_user("chw", "chw-pass", roles=["chw"])
    sim.set_settings(
        {"default_country_code": 254, "phone_validation": "partial", "forms_only_mode": True},
        merge=True,
    )
    sim.set_forms({"P": {"meta": {"code": "P"}, "fields": {}}})
    for user in (GATEWAY, ("chw", "chw-pass")):
        body = http.get("/api/v1/settings", auth=user).json()
        assert body["default_country_code"] == 254
        assert body["phone_validation"] == "partial"
        assert body["forms_only_mode"] is True
        assert list(body["forms"]) == ["P"]
        assert body["permissions"]["can_access_gateway_api"] == ["gateway"]
        assert body["sms"]["outgoing_service"] == "medic-gateway"


# 18. forms ------------------------------------------------------------------------------------


def test_forms_list_xforms_only(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.set_forms({"P": {"meta": {"code": "P"}, "fields": {}}})
    assert http.get("/api/v1/forms", auth=GATEWAY).json() == []
    sim.state.xforms["anc_visit"] = "<h:html/>"
    answer = http.get("/api/v1/forms", auth=GATEWAY)
    assert answer.json() == ["anc_visit.xml"]
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    openrosa = http.get("/api/v1/forms", auth=GATEWAY, headers={"X-OpenRosa-Version": "1.0"})
    assert "<formID>anc_visit</formID>" in openrosa.text


@pytest.mark.parametrize(
    ("name", "status", "error"),
    [
        ("anc_visit.xml", 200, None),
        ("anc_visit.json", 400, 'Invalid file format (format="json")'),
        ("nope.xml", 404, "Form not found: nope (xml)"),
        (".xml", 400, "Invalid form id"),
    ],
)
def test_form_by_id(
    cht: tuple[ChtSim, httpx.Client], name: str, status: int, error: str | None
) -> None:
    sim, http = cht
    sim.state.xforms["anc_visit"] = "<h:html/>"
    answer = http.get(f"/api/v1/forms/{name}", auth=GATEWAY)
    assert answer.status_code == status
    if error is None:
        assert answer.text == "<h:html/>"
    else:
        assert answer.json() == {"code": status, "error": error}


def test_forms_need_a_login(cht: tuple[ChtSim, httpx.Client]) -> None:
    assert cht[1].get("/api/v1/forms").status_code == 401


# 19. monitoring -------------------------------------------------------------------------------


def test_monitoring_v1_and_v2_shapes_without_auth(cht: tuple[ChtSim, httpx.Client]) -> None:
    _sim, http = cht
    v1 = http.get("/api/v1/monitoring").json()
    assert set(v1) == {
        "version",
        "couchdb",
        "date",
        "sentinel",
        "messaging",
        "outbound_push",
        "feedback",
        "conflict",
        "replication_limit",
        "connected_users",
    }
    assert set(v1["couchdb"]) == {"medic", "sentinel", "usersmeta", "users"}
    assert v1["messaging"]["outgoing"]["state"] == {
        "due": 0,
        "scheduled": 0,
        "muted": 0,
        "failed": 0,
        "delivered": 0,
    }
    v2 = http.get("/api/v2/monitoring").json()
    assert v2["replication_failure"] == {"count": 0}
    assert set(v2["messaging"]["outgoing"]) == {"total", "seven_days", "last_hundred"}


def test_monitoring_counts_messages_with_chts_grouping(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    for state in (
        "pending",
        "forwarded-to-gateway",
        "sent",
        "delivered",
        "failed",
        "scheduled",
        "muted",
        "denied",
        "duplicate",
        "cleared",
    ):
        sim.add_outgoing("+254712345678", state, state=state)
    sim.set_sentinel_backlog(7)
    body = http.get("/api/v2/monitoring").json()
    outgoing = body["messaging"]["outgoing"]
    assert outgoing["total"] == {"due": 5, "scheduled": 1, "muted": 4, "failed": 1, "delivered": 2}
    assert outgoing["seven_days"] == outgoing["total"]
    assert outgoing["last_hundred"]["pending"] == {
        "pending": 1,
        "forwarded-to-gateway": 1,
        "received-by-gateway": 0,
        "forwarded-by-gateway": 0,
    }
    assert outgoing["last_hundred"]["final"] == {"sent": 1, "delivered": 1, "failed": 1}
    assert outgoing["last_hundred"]["muted"] == {
        "denied": 1,
        "cleared": 1,
        "muted": 1,
        "duplicate": 1,
    }
    assert body["sentinel"]["backlog"] == 7
    old = http.get("/api/v1/monitoring").json()["messaging"]["outgoing"]["state"]
    assert old == outgoing["total"]


def test_monitoring_fault_mode(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.faults.monitoring_broken = True
    body = http.get("/api/v2/monitoring").json()
    assert body["version"]["app"] == ""
    assert body["sentinel"]["backlog"] == -1
    assert body["messaging"]["outgoing"]["total"]["due"] == -1
