"""Simulator checklist items 7-13 and 22: the medic-gateway protocol on /api/sms."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from smsbridge.chtsim import ChtSim

JSON = {"Accept": "application/json", "Content-Type": "application/json"}
GATEWAY = ("gateway", "gw-pass")


@pytest.fixture
def cht(chtsim: tuple[ChtSim, str]) -> Iterator[tuple[ChtSim, httpx.Client]]:
    sim, url = chtsim
    sim.add_user(*GATEWAY, roles=["gateway"])
    sim.set_settings({"default_country_code": 254}, merge=True)
    with httpx.Client(base_url=url, auth=GATEWAY, headers=JSON) as http:
        yield sim, http


def post(http: httpx.Client, body: dict[str, Any]) -> Any:
    answer = http.post("/api/sms", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


# 7. GET ---------------------------------------------------------------------------------------


def test_get_answers_medic_gateway_with_permission(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    assert http.get("/api/sms").json() == {"medic-gateway": True}
    assert http.get("/api/sms/").json() == {"medic-gateway": True}
    sim.add_user("other", "o-pass", roles=["national_admin"])
    assert http.get("/api/sms", auth=("other", "o-pass")).status_code == 403


# 8. content type and bad bodies --------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "text/plain", None])
def test_post_needs_exactly_application_json_before_auth(
    cht: tuple[ChtSim, httpx.Client], content_type: str | None
) -> None:
    _sim, http = cht
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    with httpx.Client(base_url=str(http.base_url)) as anonymous:
        answer = anonymous.post("/api/sms", content=b"{}", headers=headers)
    assert answer.status_code == 400
    assert answer.json() == {"code": 400, "error": "Content-Type must be application/json"}


@pytest.mark.parametrize("body", [{"messages": {}}, {"updates": "SENT"}, {"messages": [None]}])
def test_non_array_messages_or_updates_are_a_500(
    cht: tuple[ChtSim, httpx.Client], body: dict[str, Any]
) -> None:
    _sim, http = cht
    answer = http.post("/api/sms", json=body)
    assert answer.status_code == 500
    assert answer.json()["error"] == "Server error"


def test_empty_body_answers_an_empty_message_list(cht: tuple[ChtSim, httpx.Client]) -> None:
    assert post(cht[1], {}) == {"messages": []}


# 9./10. incoming -----------------------------------------------------------------------------


def test_incoming_messages_become_records(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    answer = post(
        http,
        {
            "messages": [
                {
                    "id": "a",
                    "from": "0712345678",
                    "content": "hello",
                    "sms_sent": 1,
                    "sms_received": 2,
                },
                {"id": "b", "from": "+254712345679", "content": "second"},
            ]
        },
    )
    assert answer == {"messages": []}
    records = sim.records()
    assert [r["sms_message"]["message"] for r in records] == ["hello", "second"]
    assert records[0]["from"] == "+254712345678"
    assert records[0]["sms_message"]["from"] == "0712345678"
    assert records[0]["sms_message"]["gateway_ref"] == "a"
    assert abs(records[0]["reported_date"] - sim.now_ms()) < 10_000  # not sms_sent


def test_incoming_without_id_from_or_content_is_skipped(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    post(
        http,
        {
            "messages": [
                {"id": "a", "from": "+254712345678", "content": ""},
                {"from": "+254712345678", "content": "no id"},
                {"id": "c", "content": "no from"},
                {"id": "d", "from": "+254712345678", "content": "good"},
            ]
        },
    )
    assert [r["sms_message"]["message"] for r in sim.records()] == ["good"]


def test_incoming_dedup_across_requests_but_not_within_one(
    cht: tuple[ChtSim, httpx.Client],
) -> None:
    sim, http = cht
    post(http, {"messages": [{"id": "x", "from": "+254712345678", "content": "first"}]})
    post(http, {"messages": [{"id": "x", "from": "+254799999999", "content": "again"}]})
    assert [r["sms_message"]["message"] for r in sim.records()] == ["first"]
    post(http, {"messages": [{"id": "y", "from": "+254712345678", "content": "twin"}] * 2})
    assert [r["sms_message"]["message"] for r in sim.records()] == ["first", "twin", "twin"]


def test_incoming_form_is_parsed(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.set_forms(
        {
            "P": {
                "meta": {"code": "P"},
                "fields": {
                    "lmp": {"type": "integer", "required": True, "labels": {"tiny": "LMP"}},
                    "name": {"type": "string", "required": True, "labels": {"tiny": "N"}},
                },
            }
        }
    )
    post(http, {"messages": [{"id": "p1", "from": "+254712345678", "content": "P 12 Jane"}]})
    (record,) = sim.records()
    assert (record["form"], record["fields"], record["errors"]) == (
        "P",
        {"lmp": 12, "name": "Jane"},
        [],
    )


def test_auto_reply_appears_in_the_same_response(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sim.set_forms(
        {
            "P": {
                "meta": {"code": "P"},
                "fields": {"name": {"type": "string", "required": True, "labels": {"tiny": "N"}}},
            }
        }
    )
    sim.set_auto_reply("P", "Thanks, {{name}} registered")
    answer = post(http, {"messages": [{"id": "p", "from": "+254712345678", "content": "P Jane"}]})
    assert [(m["to"], m["content"]) for m in answer["messages"]] == [
        ("+254712345678", "Thanks, Jane registered")
    ]
    assert sim.messages()[0]["state"] == "forwarded-to-gateway"


# 11. status updates -------------------------------------------------------------------------


def test_status_map_and_history(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    ids = [sim.add_outgoing("+254712345678", f"m{i}", state=None) for i in range(7)]
    post(
        http,
        {
            "updates": [
                {"id": ids[0], "status": "UNSENT"},
                {"id": ids[1], "status": "PENDING"},
                {"id": ids[2], "status": "SENT"},
                {"id": ids[2], "status": "DELIVERED"},
                {"id": ids[3], "status": "FAILED", "reason": "radio-off"},
                {"id": ids[4], "status": "WHATEVER"},
                {"id": ids[5]},
                {"id": "unknown-id", "status": "SENT"},
            ]
        },
    )
    assert sim.states(ids[0]) == ["received-by-gateway"]
    assert sim.states(ids[1]) == ["forwarded-by-gateway"]
    assert sim.states(ids[2]) == ["sent", "delivered"]
    failed = sim.message(ids[3])
    assert (failed["state"], failed["state_details"]) == ("failed", {"reason": "radio-off"})
    assert sim.message(ids[4])["state_details"] == {"gateway_status": "WHATEVER"}
    assert sim.states(ids[5]) == ["unrecognised"]
    assert sim.states(ids[6]) == []


def test_repeats_noop_but_failed_with_reason_appends(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    sent, failed = (sim.add_outgoing("+254712345678", t, state=None) for t in ("a", "b"))
    for _ in range(2):
        post(
            http,
            {
                "updates": [
                    {"id": sent, "status": "SENT"},
                    {"id": failed, "status": "FAILED", "reason": "x"},
                ]
            },
        )
    assert sim.states(sent) == ["sent"]
    assert sim.states(failed) == ["failed", "failed"]


def test_no_forward_only_guard_and_gateway_ref_cleared(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    mid = sim.add_outgoing("+254712345678", "a", state="pending")
    sim.state.find_task(mid)[1]["gateway_ref"] = "AT-1"  # type: ignore[index]
    post(http, {"updates": [{"id": mid, "status": "DELIVERED"}, {"id": mid, "status": "SENT"}]})
    message = sim.message(mid)
    assert message["state"] == "sent"
    assert "gateway_ref" not in message


# 12. outgoing --------------------------------------------------------------------------------


def test_outgoing_pending_and_forwarded_by_due_then_marked(
    cht: tuple[ChtSim, httpx.Client],
) -> None:
    sim, http = cht
    now = sim.now_ms()
    newer = sim.add_outgoing("0712345678", "newer", due=now)
    older = sim.add_outgoing(
        "+254712345679", "older", state="forwarded-to-gateway", due=now - 60_000, scheduled=True
    )
    sim.add_outgoing("+254712345670", "later", state="scheduled", due=now - 120_000)
    sim.add_outgoing("+254712345671", "done", state="sent")
    answer = post(http, {})
    assert [m["id"] for m in answer["messages"]] == [older, newer]
    assert answer["messages"][1] == {"id": newer, "to": "+254712345678", "content": "newer"}
    assert sim.states(newer) == ["pending", "forwarded-to-gateway"]
    assert sim.states(older) == ["forwarded-to-gateway"]  # history only the first time
    again = post(http, {})  # offered again until a status arrives
    assert [m["id"] for m in again["messages"]] == [older, newer]
    acked = post(http, {"updates": [{"id": older, "status": "UNSENT"}]})
    assert [m["id"] for m in acked["messages"]] == [newer]


def test_outgoing_is_limited_to_25(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    ids = [sim.add_outgoing("+254712345678", f"m{i}", due=1_700_000_000_000 + i) for i in range(30)]
    assert [m["id"] for m in post(http, {})["messages"]] == ids[:25]


@pytest.mark.parametrize(
    ("sms", "offered"),
    [
        (None, True),
        ({"outgoing_service": "medic-gateway"}, True),
        ({"outgoing_service": "africas-talking"}, False),
        ({}, False),
    ],
)
def test_outgoing_only_for_medic_gateway(
    cht: tuple[ChtSim, httpx.Client], sms: dict[str, Any] | None, offered: bool
) -> None:
    sim, http = cht
    settings = dict(sim.state.settings)
    settings.pop("sms")
    sim.set_settings(settings if sms is None else {**settings, "sms": sms})
    sim.add_outgoing("+254712345678", "hi")
    post(http, {"messages": [{"id": "i", "from": "+254712345678", "content": "in"}]})
    assert bool(post(http, {})["messages"]) is offered
    assert len(sim.records()) == 1


def test_set_outgoing_service_switches_offering(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    mid = sim.add_outgoing("+254712345678", "hi")
    sim.set_outgoing_service("africas-talking")
    assert post(http, {})["messages"] == []
    sim.set_outgoing_service(None)
    assert post(http, {})["messages"] == []
    sim.set_outgoing_service("medic-gateway")
    assert [m["id"] for m in post(http, {})["messages"]] == [mid]


# 13. write conflicts ----------------------------------------------------------------------


def test_conflicts_are_retried_three_times_then_500(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    mid = sim.add_outgoing("+254712345678", "a", state=None)
    sim.faults.conflict_next(3)
    post(http, {"updates": [{"id": mid, "status": "SENT"}]})
    assert sim.states(mid) == ["sent"]
    sim.faults.conflict_next(4)
    answer = http.post("/api/sms", json={"updates": [{"id": mid, "status": "DELIVERED"}]})
    assert answer.status_code == 500
    assert sim.states(mid) == ["sent"]


# 22. performance anchors (correctness here; timings in bench/chtsim.py) ---------------------


def test_hundred_incoming_and_hundred_updates(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, http = cht
    incoming = [
        {"id": f"test-message-{i}", "from": f"+447890123{i:03d}", "content": f"m {i}"}
        for i in range(100)
    ]
    assert post(http, {"messages": incoming}) == {"messages": []}
    assert len(sim.records()) == 100
    ids = [sim.add_outgoing("+32049832049", f"wo {i}", state=None) for i in range(100)]
    statuses = ["PENDING", "SENT", "DELIVERED", "FAILED"]
    updates = [
        {"id": mid, "status": statuses[i % 4], **({"reason": f"excuse #{i}"} if i % 4 == 3 else {})}
        for i, mid in enumerate(ids)
    ]
    post(http, {"updates": updates})
    assert all(len(sim.states(mid)) == 1 for mid in ids)


def test_a_client_gone_while_sending_its_body_is_a_dropped_request_not_an_error(
    cht: tuple[ChtSim, httpx.Client], caplog: pytest.LogCaptureFixture
) -> None:
    import base64
    import logging
    import socket

    from smsbridge.loopback import wait_for

    _, http = cht
    caplog.set_level(logging.DEBUG, logger="smsbridge.chtsim")
    auth = base64.b64encode(":".join(GATEWAY).encode()).decode()
    head = (
        "POST /api/sms HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
        f"Authorization: Basic {auth}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    with socket.create_connection((http.base_url.host, http.base_url.port)) as sock:
        sock.sendall(head.encode() + b'{"messages": [')  # then the bridge goes away

    def settled() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.levelno >= logging.ERROR or r.getMessage().startswith("request dropped")
        ]

    wait_for(settled, "the simulator to notice the client went away", timeout=10)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert post(http, {"messages": []}) == {"messages": []}  # and it still serves
