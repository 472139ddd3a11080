"""The cht-gateway carrier (phones): authentication and the POST body, as CHT reads them."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from smsbridge.carriers import chtgateway
from smsbridge.errors import BadRequest, Unauthorized
from smsbridge.sms import DeliveryState

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode("latin-1")).decode()
    return {"authorization": f"Basic {token}"}


def test_accounts_setting() -> None:
    assert chtgateway.accounts({"accounts": "phone1:s3cret, phone2:p:w ,bad"}) == {
        "phone1": "s3cret",
        "phone2": "p:w",
    }


def test_authenticate() -> None:
    known = {"phone1": "s3cret", "jösé": "pässword"}
    assert chtgateway.authenticate(basic("phone1", "s3cret"), known) == "phone1"
    assert chtgateway.authenticate(basic("jösé", "pässword"), known) == "jösé"  # ISO-8859-1
    for headers in (
        {},
        basic("phone1", "wrong"),
        basic("nobody", "s3cret"),
        {"authorization": "Bearer x"},
        {"authorization": "Basic !!!"},
    ):
        with pytest.raises(Unauthorized):
            chtgateway.authenticate(headers, known)


def test_parse_exchange_like_cht() -> None:
    body = {
        "messages": [
            {"id": "a", "from": "+254712345678", "content": "P 12", "sms_received": 1767225600000},
            {"id": "b", "from": "+254712345678", "content": ""},  # empty content: skipped
            {"from": "+254712345678", "content": "no id"},
        ],
        "updates": [
            {"id": "m1", "status": "PENDING"},
            {"id": "m2", "status": "FAILED", "reason": "radio-off"},
            {"id": "m3", "status": "UNSENT"},
            {"id": "m4", "status": "WEIRD"},
        ],
    }
    ex = chtgateway.parse_exchange("application/json", json.dumps(body).encode(), "phone1", NOW)
    [sms] = ex.messages
    assert (sms.carrier, sms.external_id, sms.sender, sms.text) == (
        "chtgateway",
        "a",
        "+254712345678",
        "P 12",
    )
    assert sms.received_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert sms.extra == {"phone": "phone1"}
    assert [(u.id, u.state, u.reason) for u in ex.updates] == [
        ("m1", DeliveryState.SENDING, None),
        ("m2", DeliveryState.FAILED, "radio-off"),
        ("m3", None, None),
        ("m4", None, None),
    ]


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("application/json; charset=utf-8", b"{}"),  # CHT compares the header exactly
        ("text/plain", b"{}"),
        ("application/json", b"{not json"),
        ("application/json", b"[]"),
        ("application/json", b'{"messages": {}}'),
    ],
)
def test_parse_exchange_rejects(ctype: str, body: bytes) -> None:
    with pytest.raises(BadRequest):
        chtgateway.parse_exchange(ctype, body, "phone1", NOW)


def test_reply_shape() -> None:
    assert chtgateway.reply([("m1", "+254700000001", "hi")]) == {
        "messages": [{"id": "m1", "to": "+254700000001", "content": "hi"}]
    }
    assert chtgateway.reply([]) == {"messages": []}
