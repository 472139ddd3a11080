"""The generic carrier's delivery reports name the message by the gateway's `id`, by our `ref`
(the `id` we sent), or both; with neither the report is refused."""

from __future__ import annotations

import pytest

from smsbridge.outbound import messages as outgoing
from smsbridge.sms import DeliveryState


def _status_path(bridge) -> str:  # type: ignore[no-untyped-def]
    return bridge.inbound_path("generic").replace("/inbound", "/status")


def _queued(bridge, ref: str) -> None:  # type: ignore[no-untyped-def]
    now = bridge.clock()
    bridge.store.write_sync(lambda conn: outgoing.insert_in(conn, ref, "+254712345678", "hi", now))


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_report_naming_only_our_ref_is_matched(bridge, method: str) -> None:  # type: ignore[no-untyped-def]
    _queued(bridge, f"ref-{method}")
    fields = {"ref": f"ref-{method}", "status": "delivered"}
    if method == "POST":
        response = bridge.http.post(_status_path(bridge), data=fields)
    else:
        response = bridge.http.get(_status_path(bridge), params=fields)
    assert response.status_code == 200, response.text
    message = outgoing.get(bridge.store, f"ref-{method}")
    assert message is not None and message.state is DeliveryState.DELIVERED


def test_a_report_naming_neither_id_nor_ref_is_400(bridge) -> None:  # type: ignore[no-untyped-def]
    def reports() -> int:
        return int(bridge.store.query("SELECT COUNT(*) FROM delivery_reports")[0][0])

    before = reports()
    response = bridge.http.post(_status_path(bridge), data={"status": "delivered"})
    assert response.status_code == 400
    assert response.json() == {"error": "bad_request", "detail": "missing field(s): id or ref"}
    assert reports() == before
