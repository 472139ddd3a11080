"""Every malformed input is a 4xx or a stored SMS, never a 500 (issue 10, item 7), and the phones'
/api/sms answers errors and takes gzip bodies as cht-gateway expects (issue 12, item 8): against
a live bridge (uvicorn on 127.0.0.1), its workers off, so what is stored is what the request did.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningBridge, running_bridge

PHONE_PASSWORD = "phone-pass"
# What cht-gateway's poller sends (its SimpleJsonClient2 and README): these headers exactly,
# Basic credentials from the URL's user info, a JSON body, gzip allowed.
POLLER_HEADERS = {
    "Accept": "application/json",
    "Accept-Charset": "utf-8",
    "Accept-Encoding": "gzip",
    "Cache-Control": "no-cache",
    "Content-Type": "application/json",
    "User-Agent": "Dalvik/2.1.0 (Linux; U; Android 9) medic.gateway.alert/1.0.0",
    "Authorization": "Basic " + base64.b64encode(f"phone1:{PHONE_PASSWORD}".encode()).decode(),
}
MAX_BODY = 65536


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[RunningBridge]:
    with running_bridge(
        tmp_path,
        SMSBRIDGE_CARRIERS="africastalking,twilio,vonage,generic,chtgateway",
        SMSBRIDGE_CHTGATEWAY_ACCOUNTS=f"phone1:{PHONE_PASSWORD}",
        SMSBRIDGE_MAX_BODY_BYTES=str(MAX_BODY),
    ) as running:
        yield running


# -- carrier dates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "date",
    [
        "²",  # a digit to str.isdigit, not to int()
        "9" * 5000,  # past Python's int-from-string limit
        "0001-01-01T00:00:00+01:00",  # in year 0 once in UTC
        "9999-12-31T23:59:59-01:00",  # in year 10000 once in UTC
        "2099-01-01T00:00:00Z",  # after it reached us: a carrier's clock gone wrong
    ],
    ids=["superscript", "5000-digits", "year-1", "year-9999", "future"],
)
def test_an_unreadable_carrier_date_keeps_the_sms_at_its_arrival_time(
    bridge: RunningBridge, date: str
) -> None:
    form = {"from": "+254712345678", "to": "12345", "text": "P 12", "id": "d1", "date": date}
    response = bridge.http.post(bridge.inbound_path("africastalking"), data=form)
    assert response.status_code == 200, response.text
    [message] = bridge.messages()
    assert message["sender"] == "+254712345678"
    assert message["received_at"] == round(bridge.clock() * 1000)  # ms, the arrival time


# -- nesting depth -----------------------------------------------------------------------------


DEEP = b"[" * 30000 + b"]" * 30000


@pytest.mark.parametrize(
    "path_of",
    [
        lambda b: b.inbound_path("generic"),
        lambda b: b.inbound_path("africastalking"),
        lambda b: b.inbound_path("vonage"),
        lambda b: b.inbound_path("generic").replace("/inbound", "/status"),
    ],
    ids=["generic", "africastalking", "vonage", "generic-status"],
)
def test_deeply_nested_json_on_a_webhook_is_a_400(bridge: RunningBridge, path_of: Any) -> None:
    response = bridge.http.post(
        path_of(bridge), content=DEEP, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text[:300]
    assert response.json() == {
        "error": "bad_request",
        "detail": "JSON body nested deeper than 32 levels",
    }


def test_deeply_nested_json_on_api_sms_is_a_400_in_the_gateway_shape(
    bridge: RunningBridge,
) -> None:
    nested = b'{"messages": ' + DEEP + b"}"
    response = bridge.http.post("/api/sms", content=nested, headers=POLLER_HEADERS)
    assert response.status_code == 400, response.text[:300]
    assert response.json() == {
        "error": True,
        "message": "JSON body nested deeper than 32 levels",
    }


def test_brackets_inside_strings_do_not_count_as_nesting(bridge: RunningBridge) -> None:
    body = {"from": "+254712345678", "text": "[" * 100 + '{"\\"' * 50, "id": "g1"}
    response = bridge.http.post(bridge.inbound_path("generic"), json=body)
    assert response.status_code == 200, response.text
    assert [m["text"] for m in bridge.messages()] == [body["text"]]


# -- Vonage concatenation counts ----------------------------------------------------------------


def test_vonage_part_counts_out_of_range_keep_the_sms_as_one_message(
    bridge: RunningBridge,
) -> None:
    params = {
        "msisdn": "254712345678",
        "to": "12345",
        "messageId": "v1",
        "text": "P 12",
        "type": "text",
        "concat": "true",
        "concat-ref": "9",
        "concat-total": "99999999999999999999",
        "concat-part": "1",
    }
    response = bridge.http.post(bridge.inbound_path("vonage"), data=params)
    assert response.status_code == 204, response.text
    [message] = bridge.messages()
    assert (message["sender"], message["text"]) == ("+254712345678", "P 12")


# -- /api/sms validates like the webhooks --------------------------------------------------------


def _exchange(bridge: RunningBridge, body: Any, **headers: str) -> Any:
    return bridge.http.post("/api/sms", content=json.dumps(body), headers=POLLER_HEADERS | headers)


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"id": "w1", "from": ["a"], "content": "P 12"}, "from"),
        ({"id": "w1", "from": "+254712345678", "content": {"x": 1}}, "content"),
        ({"id": ["w1"], "from": "+254712345678", "content": "P 12"}, "id"),
    ],
    ids=["from-list", "content-object", "id-list"],
)
def test_api_sms_refuses_fields_that_are_not_strings(
    bridge: RunningBridge, message: dict[str, Any], field: str
) -> None:
    response = _exchange(bridge, {"messages": [message], "updates": []})
    assert response.status_code == 400
    assert response.json() == {"error": True, "message": f"messages[0].{field} must be a string"}
    assert bridge.messages() == []


def test_api_sms_does_not_store_a_sender_that_is_no_number(bridge: RunningBridge) -> None:
    good = {"id": "w2", "from": "+254712345678", "content": "P 12", "sms_received": 1767225600000}
    long_sender = {"id": "w3", "from": "9" * 5001, "content": "P 13"}
    response = _exchange(bridge, {"messages": [long_sender, good], "updates": []})
    assert response.status_code == 200, response.text
    assert [(m["sender"], m["text"]) for m in bridge.messages()] == [("+254712345678", "P 12")]


# -- /api/sms speaks cht-gateway's error and gzip dialect (issue 12, item 8) ----------------------


def test_api_sms_errors_have_the_shape_cht_gateway_reads(bridge: RunningBridge) -> None:
    wrong = POLLER_HEADERS | {"Authorization": "Basic " + base64.b64encode(b"phone1:x").decode()}
    unauthorized = bridge.http.post("/api/sms", content=b"{}", headers=wrong)
    assert unauthorized.status_code == 401
    assert unauthorized.headers["content-type"] == "application/json"
    assert unauthorized.json() == {"error": True, "message": "wrong user or password"}
    not_json = bridge.http.post("/api/sms", content=b"{", headers=POLLER_HEADERS)
    assert not_json.status_code == 400
    assert not_json.json() == {"error": True, "message": "malformed JSON body"}
    # carrier webhooks keep the bridge's own shape
    webhook = bridge.http.post("/carriers/generic/wrong/inbound", data={"from": "+1"})
    assert webhook.status_code == 401
    assert webhook.json() == {"error": "unauthorized", "detail": "wrong webhook token"}


def test_api_sms_takes_a_gzip_body(bridge: RunningBridge) -> None:
    body = {
        "messages": [
            {
                "id": "z1",
                "from": "+254712345678",
                "content": "P 12",
                "sms_sent": 1767225600000,
                "sms_received": 1767225600000,
            }
        ],
        "updates": [],
    }
    response = bridge.http.post(
        "/api/sms",
        content=gzip.compress(json.dumps(body).encode()),
        headers=POLLER_HEADERS | {"Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"messages": []}
    [message] = bridge.messages()
    assert (message["carrier"], message["sender"], message["text"]) == (
        "chtgateway",
        "+254712345678",
        "P 12",
    )


def test_a_gzip_bomb_on_api_sms_is_a_413(bridge: RunningBridge) -> None:
    bomb = gzip.compress(b'{"messages": [], "pad": "' + b" " * (50 * MAX_BODY) + b'"}')
    assert len(bomb) < MAX_BODY  # it passes the body limit compressed
    response = bridge.http.post(
        "/api/sms", content=bomb, headers=POLLER_HEADERS | {"Content-Encoding": "gzip"}
    )
    assert response.status_code == 413
    assert response.json() == {
        "error": True,
        "message": f"decompressed request body over {MAX_BODY} bytes",
    }


@pytest.mark.parametrize(
    ("body", "encoding", "status"),
    [
        (b"not gzip at all", "gzip", 400),
        (gzip.compress(b"{}")[:-4], "gzip", 400),
        (b"{}", "br", 415),
    ],
    ids=["not-gzip", "truncated", "brotli"],
)
def test_a_body_that_is_not_what_its_encoding_says_is_refused(
    bridge: RunningBridge, body: bytes, encoding: str, status: int
) -> None:
    response = bridge.http.post(
        "/api/sms", content=body, headers=POLLER_HEADERS | {"Content-Encoding": encoding}
    )
    assert response.status_code == status
    assert response.json()["error"] is True
