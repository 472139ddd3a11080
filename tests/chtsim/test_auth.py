"""Simulator checklist items 1-6: users, roles, permissions, sessions, the three 401s, 403s,
error bodies, the failed-login lockout, start-up mode and gzip."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator

import httpx
import pytest

from smsbridge.chtsim import ChtSim
from smsbridge.chtsim.responses import preferred_type
from tests.fakeclock import FakeClock

JSON = {"Accept": "application/json"}
GATEWAY = ("gateway", "gw-pass")


@pytest.fixture
def cht(chtsim: tuple[ChtSim, str]) -> Iterator[tuple[ChtSim, httpx.Client]]:
    sim, url = chtsim
    sim.add_user(*GATEWAY, roles=["gateway"])
    with httpx.Client(base_url=url, follow_redirects=False) as http:
        yield sim, http


# 1. users, roles and permissions ------------------------------------------------------------


def test_admin_passes_every_permission(cht: tuple[ChtSim, httpx.Client]) -> None:
    _sim, http = cht
    assert http.get("/api/sms", auth=("admin", "pass"), headers=JSON).json() == {
        "medic-gateway": True
    }


def test_permission_needs_a_configured_role(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    assert http.get("/api/sms", auth=GATEWAY, headers=JSON).status_code == 200
    roles = dict(sim.state.settings["roles"])
    del roles["gateway"]
    sim.set_settings({"roles": roles}, merge=True)  # still listed in permissions, not configured
    answer = http.get("/api/sms", auth=GATEWAY, headers=JSON)
    assert answer.status_code == 403
    assert answer.json() == {"code": 403, "error": "Insufficient privileges"}


def test_missing_permission_is_403_text_or_json(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.add_user("manager", "m-pass", roles=["national_admin"])
    text = http.get("/api/sms", auth=("manager", "m-pass"))
    assert (text.status_code, text.text) == (403, "Insufficient privileges")
    assert text.headers["content-type"].startswith("text/plain")


# 2. basic auth and sessions -----------------------------------------------------------------


@pytest.mark.parametrize("form", [True, False])
def test_session_cookie_is_accepted_until_revoked(
    cht: tuple[ChtSim, httpx.Client], form: bool
) -> None:
    sim, http = cht
    creds = {"name": "gateway", "password": "gw-pass"}
    answer = http.post("/_session", data=creds) if form else http.post("/_session", json=creds)
    assert answer.json() == {"ok": True, "name": "gateway", "roles": ["gateway"]}
    cookie = answer.cookies["AuthSession"]
    assert "HttpOnly" in answer.headers["set-cookie"]
    headers = {**JSON, "Cookie": f"AuthSession={cookie}"}
    with httpx.Client(base_url=str(http.base_url), headers=headers) as fresh:
        assert fresh.get("/api/sms").status_code == 200
        sim.revoke_sessions()
        assert fresh.get("/api/sms").status_code == 401


def test_bad_session_login_is_a_401(cht: tuple[ChtSim, httpx.Client]) -> None:
    _sim, http = cht
    answer = http.post("/_session", json={"name": "gateway", "password": "no"}, headers=JSON)
    assert answer.status_code == 401
    assert "AuthSession" not in answer.cookies


def test_latin1_basic_credentials(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.add_user("gateway2", "pässword", roles=["gateway"])
    token = base64.b64encode("gateway2:pässword".encode("latin-1")).decode()
    answer = http.get("/api/sms", headers={**JSON, "Authorization": f"Basic {token}"})
    assert answer.status_code == 200


# 3. the three faces of 401 ----------------------------------------------------------------


def test_401_json_when_json_is_preferred(cht: tuple[ChtSim, httpx.Client]) -> None:
    _sim, http = cht
    answer = http.get("/api/sms", auth=("gateway", "wrong"), headers=JSON)
    assert answer.status_code == 401
    assert answer.json() == {"code": 401, "error": "unauthorized"}
    assert answer.headers["logout-authorization"] == "CHT-Core API"


def test_401_is_a_login_redirect_for_a_browser_like_client(
    cht: tuple[ChtSim, httpx.Client],
) -> None:
    _sim, http = cht
    answer = http.get("/api/sms?x=1")  # httpx's User-Agent, Accept */*
    assert answer.status_code == 302
    assert answer.headers["location"] == "/medic/login?redirect=%2Fapi%2Fsms%3Fx%3D1"
    assert "login=force" in answer.headers["set-cookie"]
    assert answer.headers["logout-authorization"] == "CHT-Core API"


def test_401_plain_text_for_the_gateway_app_or_no_user_agent(
    cht: tuple[ChtSim, httpx.Client],
) -> None:
    _sim, http = cht
    dalvik = "Dalvik/2.1.0 (Linux; U; Android 9) medic.gateway.alert/1.0"
    for agent in ("", dalvik):
        answer = http.get("/api/sms", headers={"User-Agent": agent})
        assert (answer.status_code, answer.text) == (401, "not logged in")
        assert answer.headers["www-authenticate"] == 'Basic realm="Medic Web Services"'


def test_settings_401_is_always_the_basic_prompt(cht: tuple[ChtSim, httpx.Client]) -> None:
    _sim, http = cht
    answer = http.get("/api/v1/settings", headers=JSON)
    assert (answer.status_code, answer.text) == (401, "not logged in")


# 4. 403 bodies ---------------------------------------------------------------------------------


def test_offline_user_gets_the_firewall_body_as_json(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.add_user("chw", "chw-pass", roles=["chw"])
    sim.add_user("ghost", "g-pass", roles=["not-configured"])
    for user in (("chw", "chw-pass"), ("ghost", "g-pass")):
        answer = http.get("/api/v1/contacts-by-phone?phone=%2B254712345678", auth=user)
        assert answer.status_code == 403
        assert answer.json() == {
            "code": 403,
            "error": "forbidden",
            "details": "Offline users are not allowed access to this endpoint",
        }


# 5. error bodies ---------------------------------------------------------------------------------


def test_server_errors_are_rewritten_with_public_details(cht: tuple[ChtSim, httpx.Client]) -> None:
    _sim, http = cht
    as_json = http.post("/api/v2/records", json={"x": 1}, auth=GATEWAY, headers=JSON)
    assert as_json.status_code == 500
    assert as_json.json() == {
        "code": 500,
        "error": "Server error",
        "details": "Missing _meta property.",
    }
    as_text = http.post("/api/v2/records", json={"x": 1}, auth=GATEWAY)
    assert as_text.text == 'Server error: "Missing _meta property."'


def test_malformed_json_is_a_500(cht: tuple[ChtSim, httpx.Client]) -> None:
    _sim, http = cht
    answer = http.post(
        "/api/sms",
        content=b"{nope",
        auth=GATEWAY,
        headers={**JSON, "Content-Type": "application/json"},
    )
    assert answer.status_code == 500
    assert answer.json() == {"code": 500, "error": "Server error"}


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, "text/plain"),
        ("*/*", "text/plain"),
        ("application/json", "application/json"),
        ("application/json, text/plain, */*", "application/json"),
        ("text/html, application/json;q=0.9", "application/json"),
        ("text/plain;q=0.5, application/json", "application/json"),
        ("image/png", None),
    ],
)
def test_accept_negotiation_matches_express(accept: str | None, chosen: str | None) -> None:
    assert preferred_type(accept, ["text/plain", "application/json"]) == chosen


# 6. lockout, start-up, gzip ------------------------------------------------------------------


def test_ten_failed_logins_lock_the_ip_out_for_ten_seconds() -> None:
    from smsbridge.chtsim import running_chtsim

    clock = FakeClock()
    sim = ChtSim(clock=clock)
    sim.add_user(*GATEWAY, roles=["gateway"])
    with running_chtsim(sim) as url, httpx.Client(base_url=url, headers=JSON) as http:
        for _ in range(10):
            assert http.get("/api/sms", auth=("gateway", "bad")).status_code == 401
        locked = http.get("/api/sms", auth=GATEWAY)
        assert locked.status_code == 429
        assert locked.json() == {"code": 429, "error": "Too Many Requests"}
        assert http.get("/api/sms", auth=("admin", "pass")).status_code == 429  # same IP
        clock.now += 10
        assert http.get("/api/sms", auth=GATEWAY).status_code == 200


def test_startup_mode_503_json_or_200_html(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.faults.starting = True
    answer = http.get("/api/sms", auth=GATEWAY, headers=JSON)
    assert (answer.status_code, answer.json()) == (503, {"error": "Service unavailable"})
    page = http.get("/api/sms", auth=GATEWAY)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_big_responses_are_gzipped_and_gzip_bodies_are_read(
    cht: tuple[ChtSim, httpx.Client],
) -> None:
    sim, http = cht
    for i in range(30):
        sim.add_outgoing(f"+2547123456{i:02d}", "A reminder long enough to pass one kilobyte")
    body = gzip.compress(json.dumps({"messages": []}).encode())
    answer = http.post(
        "/api/sms",
        content=body,
        auth=GATEWAY,
        headers={
            **JSON,
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Accept-Encoding": "gzip",
        },
    )
    assert answer.headers["content-encoding"] == "gzip"
    assert len(answer.json()["messages"]) == 25
