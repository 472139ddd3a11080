"""What every webhook carrier's inbound SMS passes (carriers/base.py, once for all carriers): the
sender is a phone number or an alphanumeric sender id, sender and text are strings, the body is
a form or JSON (415 otherwise), and text arrives with every character it was sent with (the
Content-Type's charset; without one UTF-8, else Latin-1 as Kannel sends), never U+FFFD."""

from __future__ import annotations

from typing import Any

import pytest

NOT_A_SENDER = {"error": "bad_request", "detail": "from is not a phone number or sender id"}

BAD_SENDERS = [
    "abc$",  # not a sender id character
    '{"a": 1}',
    "1" * 1500,
    "+" + "1" * 21,  # more digits than any phone number
    "Clinic Kisumu",  # 13 characters: longer than a sender id
    "+2547abc12345",
    "ÿþ",  # not GSM letters
    "+",
]


@pytest.mark.parametrize("sender", BAD_SENDERS)
def test_a_sender_that_is_no_phone_number_nor_sender_id_is_400(bridge, sender: str) -> None:  # type: ignore[no-untyped-def]
    url = bridge.inbound_path("generic")
    response = bridge.http.post(url, data={"from": sender, "text": "x"})
    assert response.status_code == 400, response.text
    assert response.json() == NOT_A_SENDER
    assert bridge.messages() == []


def test_every_carrier_checks_its_sender(bridge) -> None:  # type: ignore[no-untyped-def]
    at = bridge.http.post(
        bridge.inbound_path("africastalking"), data={"from": "abc$", "id": "AT1", "text": "x"}
    )
    vonage = bridge.http.get(
        bridge.inbound_path("vonage"), params={"msisdn": "12ab$", "messageId": "V1", "text": "x"}
    )
    assert (at.status_code, at.json()["detail"]) == (400, "from is not a phone number or sender id")
    assert vonage.status_code == 400
    assert vonage.json()["detail"] == "msisdn is not a phone number or sender id"
    assert bridge.messages() == []


@pytest.mark.parametrize(
    ("sender", "stored"),
    [
        ("+254 712-345-678", "+254712345678"),
        ("00254712345678", "+254712345678"),
        ("00 254 712 345 678", "+254712345678"),
        ("0712 345 678", "0712 345 678"),  # local: CHT's normalisation comes later
        ("(0712) 345.678", "(0712) 345.678"),
        ("5000", "5000"),
        ("MPESA", "MPESA"),
        ("Clinic 24", "Clinic 24"),
        ("Sågbräda", "Sågbräda"),  # GSM letters
        ("+" + "1" * 20, "+" + "1" * 20),
    ],
)
def test_phone_numbers_and_sender_ids_are_accepted(bridge, sender: str, stored: str) -> None:  # type: ignore[no-untyped-def]
    response = bridge.http.post(bridge.inbound_path("generic"), data={"from": sender, "text": "x"})
    assert response.status_code == 200, response.text
    [row] = bridge.messages()
    assert row["sender"] == stored


def test_vonage_msisdn_is_international_without_the_plus(bridge) -> None:  # type: ignore[no-untyped-def]
    params = {"msisdn": "447700900001", "messageId": "V2", "text": "x"}
    assert bridge.http.get(bridge.inbound_path("vonage"), params=params).status_code == 204
    [row] = bridge.messages()
    assert row["sender"] == "+447700900001"


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        ({"from": {"a": 1}, "text": "x"}, "from must be a string"),
        ({"from": 254712345678, "text": "x"}, "from must be a string"),
        ({"from": ["+254712345678"], "text": "x"}, "from must be a string"),
        ({"from": "+254712345678", "text": {"a": 1}}, "text must be a string"),
        ({"from": "+254712345678", "text": 12}, "text must be a string"),
    ],
)
def test_json_sender_and_text_must_be_strings(bridge, payload: dict[str, Any], detail: str) -> None:  # type: ignore[no-untyped-def]
    response = bridge.http.post(bridge.inbound_path("generic"), json=payload)
    assert response.status_code == 400, response.text
    assert response.json() == {"error": "bad_request", "detail": detail}
    assert bridge.messages() == []


@pytest.mark.parametrize(
    ("content", "headers", "files"),
    [
        (b"from=%2B254712345678&text=x", {"content-type": "text/plain"}, None),
        (b"<sms><from>+254712345678</from></sms>", {"content-type": "application/xml"}, None),
        (b"from=%2B254712345678&text=x", {"content-type": ""}, None),
        (None, {}, {"from": (None, "+254712345678"), "text": (None, "x")}),  # multipart
    ],
)
def test_a_body_neither_form_nor_json_is_415(bridge, content, headers, files) -> None:  # type: ignore[no-untyped-def]
    url = bridge.inbound_path("generic")
    if files is not None:
        response = bridge.http.post(url, files=files)
    else:
        response = bridge.http.post(url, content=content, headers=headers)
    assert response.status_code == 415, response.text
    body = response.json()
    assert body["error"] == "unsupported_media_type"
    assert body["detail"].startswith("unsupported Content-Type")
    assert bridge.messages() == []


def _texts(bridge) -> list[str]:  # type: ignore[no-untyped-def]
    return [row["text"] for row in bridge.messages()]


def test_a_form_in_the_charset_it_names_is_read_in_it(bridge) -> None:  # type: ignore[no-untyped-def]
    response = bridge.http.post(
        bridge.inbound_path("generic"),
        content=b"from=%2B254712345678&text=caf\xe9+%E0+Kisumu",
        headers={"content-type": "application/x-www-form-urlencoded; charset=ISO-8859-1"},
    )
    assert response.status_code == 200, response.text
    assert _texts(bridge) == ["café à Kisumu"]


def test_kannel_latin1_query_keeps_every_character(bridge) -> None:  # type: ignore[no-untyped-def]
    url = bridge.inbound_path("generic")
    # Kannel's %a: the text URL-encoded in Latin-1 (its default), no charset anywhere
    kannel = bridge.http.get(f"{url}?from=%2B254712345678&text=caf%E9+kannel&id=k1")
    utf8 = bridge.http.get(f"{url}?from=%2B254712345678&text=caf%C3%A9+utf8&id=k2")
    form = bridge.http.post(
        url,
        content=b"from=%2B254712345678&text=caf%E9+form&id=k3",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert [kannel.status_code, utf8.status_code, form.status_code] == [200, 200, 200]
    assert sorted(_texts(bridge)) == ["café form", "café kannel", "café utf8"]
    assert not any("\ufffd" in text for text in _texts(bridge))


@pytest.mark.parametrize(
    ("charset", "detail"),
    [("utf-8", "body is not valid utf-8"), ("klingon", "unknown charset 'klingon'")],
)
def test_a_body_not_in_its_named_charset_is_400(bridge, charset: str, detail: str) -> None:  # type: ignore[no-untyped-def]
    response = bridge.http.post(
        bridge.inbound_path("generic"),
        content=b"from=%2B254712345678&text=caf%E9",
        headers={"content-type": f"application/x-www-form-urlencoded; charset={charset}"},
    )
    assert response.status_code == 400
    assert response.json() == {"error": "bad_request", "detail": detail}
    assert bridge.messages() == []


def test_a_json_body_in_latin1_is_not_mangled(bridge) -> None:  # type: ignore[no-untyped-def]
    response = bridge.http.post(
        bridge.inbound_path("generic"),
        content='{"from": "+254712345678", "text": "café"}'.encode("latin-1"),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert _texts(bridge) == ["café"]
