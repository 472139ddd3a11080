"""Simulator checklist item 20: test controls (HTTP under /_sim/ and Python), request counts,
faults over HTTP, persistence, the demo deployment and `smsbridge chtsim`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from smsbridge.chtsim import ChtSim, running_chtsim
from smsbridge.chtsim.demo_data import CHW_PHONES, GATEWAY_USER
from smsbridge.loopback import free_port

JSON = {"Accept": "application/json", "Content-Type": "application/json"}


@pytest.fixture
def cht(chtsim: tuple[ChtSim, str]) -> Iterator[tuple[ChtSim, httpx.Client]]:
    sim, url = chtsim
    sim.install_demo()
    with httpx.Client(base_url=url, auth=GATEWAY_USER, headers=JSON) as http:
        yield sim, http


def test_fixed_sim_messages_shapes(cht: tuple[ChtSim, httpx.Client]) -> None:
    _sim, http = cht
    seeded = http.post(
        "/_sim/messages",
        json={"messages": [{"to": "+254712345678", "content": "Your ANC visit is tomorrow"}]},
    )
    assert seeded.status_code == 200
    (created,) = seeded.json()["messages"]
    listed = http.get("/_sim/messages").json()
    assert isinstance(listed, list) and listed == [created]
    assert created["to"] == "+254712345678"
    assert created["content"] == "Your ANC visit is tomorrow"
    assert created["state"] == "pending"
    assert [h["state"] for h in created["state_history"]] == ["pending"]
    offered = http.post("/api/sms", json={}).json()["messages"]
    assert offered == [
        {"id": created["id"], "to": "+254712345678", "content": "Your ANC visit is tomorrow"}
    ]
    http.post("/api/sms", json={"updates": [{"id": created["id"], "status": "DELIVERED"}]})
    (after,) = http.get("/_sim/messages").json()
    assert after["state"] == "delivered"
    assert [h["state"] for h in after["state_history"]] == [
        "pending",
        "forwarded-to-gateway",
        "delivered",
    ]
    assert http.get(f"/_sim/messages/{created['id']}").json() == after


def test_fixed_sim_records_shape(cht: tuple[ChtSim, httpx.Client]) -> None:
    _sim, http = cht
    http.post(
        "/api/sms",
        json={
            "messages": [
                {"id": "m1", "from": CHW_PHONES["chw-alice"], "content": "P 12 Jane"},
                {"id": "m2", "from": CHW_PHONES["chw-bob"], "content": "hello there"},
            ]
        },
    )
    http.post(
        "/api/v2/records",
        json={
            "_meta": {"form": "V", "from": CHW_PHONES["chw-bob"]},
            "patient_id": "123",
            "visit_number": 2,
        },
    )
    http.post("/_sim/messages", json={"messages": [{"to": "+254712345678", "content": "x"}]})
    records = http.get("/_sim/records").json()
    assert isinstance(records, list)
    assert [r.get("form") for r in records] == ["P", None, "V"]  # oldest first, no seeded SMS
    assert records[0]["fields"] == {"last_menstrual_period": 12, "patient_name": "Jane"}
    assert records[0]["contact"]["_id"] == "chw-alice"


def test_seeding_any_state_due_and_scheduled_then_sentinel(
    cht: tuple[ChtSim, httpx.Client],
) -> None:
    sim, http = cht
    now = sim.now_ms()
    http.post(
        "/_sim/messages",
        json={
            "messages": [
                {
                    "to": "+254712345678",
                    "content": "later",
                    "state": "scheduled",
                    "due": now - 1000,
                    "scheduled": True,
                    "id": "sched-1",
                },
                {
                    "to": "+254712345678",
                    "content": "future",
                    "state": "scheduled",
                    "due": now + 10**7,
                    "scheduled": True,
                    "id": "sched-2",
                },
            ]
        },
    )
    assert http.post("/api/sms", json={}).json() == {"messages": []}
    assert http.post("/_sim/sentinel", json={}).json() == {"ok": True, "moved": 1}
    assert [m["id"] for m in http.post("/api/sms", json={}).json()["messages"]] == ["sched-1"]
    assert sim.states("sched-1") == ["scheduled", "pending", "forwarded-to-gateway"]
    assert sim.message("sched-2")["scheduled"] is True


def test_bad_control_requests_are_400(cht: tuple[ChtSim, httpx.Client]) -> None:
    _sim, http = cht
    assert http.post("/_sim/messages", json={"messages": [{"to": 1}]}).status_code == 400
    assert http.post("/_sim/messages", content=b"{").status_code == 400
    assert http.post("/_sim/faults", json={"kind": "explode"}).status_code == 400


def test_request_counts_per_endpoint(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    for _ in range(3):
        http.post("/api/sms", json={})
    http.get("/api/sms")
    http.get("/api/v1/settings")
    counts = http.get("/_sim/requests").json()
    assert counts["POST /api/sms"] == 3 and counts["GET /api/sms"] == 1
    assert sim.request_count("/api/sms") == 4
    assert sim.request_count("/api/sms", "POST") == 3
    assert not any(key.split(" ")[1].startswith("/_sim") for key in counts)


def test_faults_over_http(cht: tuple[ChtSim, httpx.Client]) -> None:
    _sim, http = cht
    http.post(
        "/_sim/faults",
        json={"kind": "fail", "times": 2, "status": 503, "path": "/api/sms", "retry_after": 5},
    )
    first = http.post("/api/sms", json={})
    assert (first.status_code, first.headers["retry-after"]) == (503, "5")
    assert http.get("/api/v1/settings").status_code == 200  # other paths untouched
    assert http.post("/api/sms", json={}).status_code == 503
    assert http.post("/api/sms", json={}).status_code == 200
    http.post("/_sim/faults", json={"kind": "auth"})
    assert http.get("/api/v1/settings").status_code == 401
    http.post("/_sim/faults", json={"kind": "drop", "path": "/api/sms"})
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(
            "/api/sms",
            json={"messages": [{"id": "d1", "from": "+254712345678", "content": "P 1 A"}]},
        )
    assert len(http.get("/_sim/records").json()) == 1  # processed before the drop
    http.post("/_sim/faults", json={"kind": "timeout", "seconds": 5})
    with pytest.raises(httpx.ReadTimeout):
        http.get("/api/v1/settings", timeout=0.2)
    http.post("/_sim/starting", json={"on": True})
    assert http.get("/api/v1/settings").status_code == 503
    assert http.delete("/_sim/faults").json() == {"ok": True}
    assert http.get("/api/v1/settings").status_code == 200


def test_settings_forms_users_contacts_over_http(cht: tuple[ChtSim, httpx.Client]) -> None:
    _sim, http = cht
    http.patch("/_sim/settings", json={"forms_only_mode": True})
    http.post("/_sim/forms", json={"X": {"meta": {"code": "X"}, "fields": {}}})
    http.post("/_sim/users", json={"name": "bridge2", "password": "b2-pass", "roles": ["gateway"]})
    http.post(
        "/_sim/contacts",
        json={
            "contacts": [
                {"_id": "new-chw", "type": "person", "phone": "+254700111222", "parent": "hc-1"}
            ]
        },
    )
    http.post("/_sim/auto-replies", json={"X": "Got it"})
    settings = http.get("/api/v1/settings", auth=("bridge2", "b2-pass")).json()
    assert settings["forms_only_mode"] is True and "X" in settings["forms"]
    found = http.get("/api/v1/contacts-by-phone", params={"phone": "+254700111222"}).json()
    assert found["docs"][0]["parent"]["name"] == "Kondele Health Centre"
    answer = http.post(
        "/api/sms", json={"messages": [{"id": "x1", "from": "+254700111222", "content": "X"}]}
    ).json()
    assert [m["content"] for m in answer["messages"]] == ["Got it"]
    http.post("/_sim/reset")
    assert http.get("/_sim/records").json() == []
    assert http.get("/api/sms", auth=("admin", "pass")).status_code == 200


def test_state_persists_to_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "cht.json"

    def send_report(sim: ChtSim) -> None:
        with (
            running_chtsim(sim) as url,
            httpx.Client(base_url=url, auth=GATEWAY_USER, headers=JSON) as http,
        ):
            report = {"id": "p1", "from": CHW_PHONES["chw-alice"], "content": "P 10 Mary"}
            http.post("/api/sms", json={"messages": [report]})

    sim = ChtSim(state_path=path)
    sim.install_demo()
    send_report(sim)
    again = ChtSim(state_path=path)
    assert [r["fields"]["patient_name"] for r in again.records()] == ["Mary"]
    assert again.messages()[0]["content"].startswith("Thank you Alice Achieng")
    send_report(again)  # the stored gateway ref still de-duplicates after the restart
    assert len(ChtSim(state_path=path).records()) == 1
    assert json.loads(path.read_text())["version"] == 1


def test_demo_deployment_answers_a_registration_and_a_bad_sms(
    cht: tuple[ChtSim, httpx.Client],
) -> None:
    _sim, http = cht
    answer = http.post(
        "/api/sms",
        json={
            "messages": [
                {"id": "1", "from": CHW_PHONES["chw-alice"], "content": "P 12 Jane Doe"},
                {"id": "2", "from": CHW_PHONES["chw-bob"], "content": "V"},
                {"id": "3", "from": "+254799000111", "content": "P 12 Unknown"},
            ]
        },
    ).json()
    replies = {m["to"]: m["content"] for m in answer["messages"]}
    assert replies[CHW_PHONES["chw-alice"]] == (
        "Thank you Alice Achieng, Jane Doe is registered as pregnant."
    )
    assert replies[CHW_PHONES["chw-bob"]] == ("Missing or invalid fields: patient_id,visit_number.")
    assert replies["+254799000111"] == "Facility not found."


@pytest.mark.slow
def test_smsbridge_chtsim_command(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smsbridge",
            "chtsim",
            "--port",
            str(port),
            "--user",
            "root:s3cret",
            "--state",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(3)]
        assert f"http://127.0.0.1:{port}" in banner[0]
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, headers={"Accept": "application/json"}) as http:
            for _ in range(100):
                try:
                    answer = http.get("/api/sms", auth=("root", "s3cret"))
                    break
                except httpx.ConnectError:
                    time.sleep(0.05)  # the server is still starting
            assert answer.json() == {"medic-gateway": True}
            assert "P" in http.get("/api/v1/settings", auth=GATEWAY_USER).json()["forms"]
    finally:
        process.send_signal(signal.SIGINT)
        out, _err = process.communicate(timeout=10)
    assert state.exists()
    assert "gateway-pass" in "".join(banner) + out


def test_smsbridge_chtsim_on_a_taken_port_says_so_and_exits_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "smsbridge", "chtsim", "--port", str(port)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "listening" not in done.stdout
