"""End to end over HTTP: a carrier webhook to the bridge (uvicorn, workers running) becomes a
report in the CHT simulator (uvicorn). The bridge's clock is a fake one the test moves: retries
happen when the test says time has passed, never by sleeping."""

from __future__ import annotations

from typing import Any

import httpx

from smsbridge.chtsim import ChtSim
from smsbridge.chtsim.demo_data import CHW_PHONES, GATEWAY_USER
from smsbridge.loopback import wait_for

ALICE = CHW_PHONES["chw-alice"]


def at_webhook(bridge: Any, text: str, external_id: str, sender: str = ALICE) -> httpx.Response:
    return bridge.http.post(
        bridge.inbound_path("africastalking"),
        data={
            "from": sender,
            "to": "28901",
            "text": text,
            "id": external_id,
            "date": "2023-11-14T20:00:00Z",
        },
    )


def test_webhook_becomes_a_report_with_fields_form_sender_and_reported_date(
    bridge_factory: Any, demo_sim: ChtSim, demo_cht_url: str
) -> None:
    bridge = bridge_factory(cht_url=demo_cht_url, start_workers=True)
    assert at_webhook(bridge, "P 12 Jane", "AT-1").status_code == 200
    [record] = wait_for(lambda: [r for r in demo_sim.records() if r.get("form") == "P"])
    assert record["from"] == ALICE
    assert record["fields"] == {"last_menstrual_period": 12, "patient_name": "Jane"}
    assert record["reported_date"] == 1699992000000  # AT's `date`, not when CHT got it
    assert record["contact"]["_id"] == "chw-alice"
    wait_for(lambda: bridge.messages()[0]["state"] == "submitted")
    # CHT's auto-reply for the report is fetched back by the sync loop (OUTBOUND's side)


def test_cht_failing_for_a_while_then_delivered_once(
    bridge_factory: Any, demo_sim: ChtSim, demo_cht_url: str
) -> None:
    bridge = bridge_factory(cht_url=demo_cht_url, start_workers=True)
    demo_sim.faults.fail_next(2, 503, path="/api/v2/records")
    assert at_webhook(bridge, "P 12 Jane", "AT-2").status_code == 200
    for attempt in (1, 2):
        wait_for(lambda a=attempt: demo_sim.request_count("/api/v2/records") == a)
        # the retry waits for the bridge's clock: move it past the backoff
        wait_for(
            lambda: bridge.store.query(
                "SELECT not_before FROM tasks WHERE state = 'ready' AND attempts > 0"
            )
        )
        [(due,)] = bridge.store.query("SELECT not_before FROM tasks WHERE state = 'ready'")
        assert due > bridge.clock()
        bridge.clock.advance(due - bridge.clock() + 0.01)
    wait_for(lambda: bridge.messages()[0]["state"] == "submitted")
    assert len([r for r in demo_sim.records() if r.get("form") == "P"]) == 1
    assert demo_sim.request_count("/api/v2/records") == 3


def test_non_form_text_is_relayed(bridge_factory: Any, demo_sim: ChtSim, demo_cht_url: str) -> None:
    bridge = bridge_factory(cht_url=demo_cht_url, start_workers=True)
    assert at_webhook(bridge, "The clinic has no ORS left", "AT-3").status_code == 200
    wait_for(lambda: bridge.messages()[0]["state"] == "relayed")
    [record] = [r for r in demo_sim.records() if r.get("from") == ALICE]
    assert record["sms_message"]["gateway_ref"] == bridge.messages()[0]["uuid"]


def test_readyz_reports_the_pause_after_cht_refuses_our_credentials(
    bridge_factory: Any, demo_sim: ChtSim, demo_cht_url: str
) -> None:
    bridge = bridge_factory(cht_url=demo_cht_url, start_workers=True)
    demo_sim.set_password(GATEWAY_USER[0], "rotated")
    assert at_webhook(bridge, "P 12 Jane", "AT-4").status_code == 200  # still accepted
    wait_for(lambda: bridge.service.gate.paused_reason())
    response = bridge.http.get("/readyz")
    assert response.status_code == 503
    assert "paused" in response.json()["checks"]["cht"]["detail"]
    assert bridge.messages()[0]["state"] == "received"  # kept, waiting
    demo_sim.set_password(GATEWAY_USER[0], GATEWAY_USER[1])
    bridge.clock.advance(61)  # the next credentials probe is due
    wait_for(lambda: bridge.messages()[0]["state"] == "submitted")
