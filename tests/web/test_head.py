"""HEAD on a carrier's webhook URLs is a URL check: it changes nothing. Starlette answers HEAD
through a route's GET handler, so without care a HEAD carrying an SMS in its query string would
store it (and one on a status URL would apply a delivery report)."""

from __future__ import annotations

from typing import Any

import pytest

from smsbridge.carriers import generic
from tests.conftest import WEBHOOK_TOKENS, RunningBridge

SMS = {"from": "+254712345678", "text": "P 12 Jane", "id": "gw-head-1"}


def test_head_with_an_sms_in_the_query_stores_nothing_and_answers_200(
    bridge: RunningBridge,
) -> None:
    head = bridge.http.head(bridge.inbound_path("generic"), params=SMS)
    assert head.status_code == 200 and head.content == b""
    assert bridge.messages() == []
    # the same request by GET is an SMS: stored
    assert bridge.http.get(bridge.inbound_path("generic"), params=SMS).status_code == 200
    assert [m["external_id"] for m in bridge.messages()] == ["gw-head-1"]


@pytest.mark.parametrize("carrier", ["twilio", "africastalking", "vonage", "kannel", "rapidpro"])
def test_head_on_any_carriers_inbound_url_is_a_url_check(
    bridge: RunningBridge, carrier: str
) -> None:
    """POST-only carriers too: a URL check that met 405 (or a 400 for the fields a HEAD cannot
    carry) would take a good URL for a broken one."""
    assert bridge.http.head(bridge.inbound_path(carrier)).status_code == 200
    assert bridge.http.head(bridge.inbound_path(carrier), params=SMS).status_code == 200
    assert bridge.messages() == []


def test_head_still_checks_the_carrier_and_the_token(bridge: RunningBridge) -> None:
    assert bridge.http.head("/carriers/generic/wrong-token/inbound").status_code == 401
    assert bridge.http.head("/carriers/nosuch/any-token/inbound").status_code == 404
    token = WEBHOOK_TOKENS["generic"]
    assert bridge.http.head(f"/carriers/generic/{token}/status").status_code == 200
    assert bridge.http.head("/carriers/generic/wrong-token/status").status_code == 401


def test_head_on_a_status_url_applies_no_delivery_report(bridge: RunningBridge) -> None:
    path = f"/carriers/{generic.NAME}/{WEBHOOK_TOKENS['generic']}/status"
    report = {"id": "g-head-1", "ref": "ref-head-1", "status": "delivered"}

    def kept() -> int:
        rows = bridge.store.query(
            "SELECT COUNT(*) FROM delivery_reports WHERE external_id = ?", ("g-head-1",)
        )
        return int(rows[0][0])

    assert bridge.http.head(path, params=report).status_code == 200
    assert kept() == 0
    assert bridge.http.get(path, params=report).status_code == 200  # by GET it is a report
    assert kept() == 1


def test_head_on_the_phones_url_is_their_url_check(bridge_factory: Any) -> None:
    """HEAD /api/sms is GET without its body (as on CHT's own /api/sms): the password checked,
    200 with nothing exchanged; it used to fall into the POST branch and get a 400."""
    phones = bridge_factory(
        SMSBRIDGE_CARRIERS="chtgateway", SMSBRIDGE_CHTGATEWAY_ACCOUNTS="phone1:right-pass-1"
    )
    head = phones.http.head("/api/sms", auth=("phone1", "right-pass-1"))
    assert head.status_code == 200 and head.content == b""
    assert phones.http.head("/api/sms", auth=("phone1", "wrong")).status_code == 401
    assert phones.http.get("/api/sms", auth=("phone1", "right-pass-1")).json() == {
        "medic-gateway": True
    }
    assert phones.messages() == []
