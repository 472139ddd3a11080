"""Form bodies and query strings as smsbridge/carriers/webhook.py decodes them: the common case
(ASCII on the wire, UTF-8 once unescaped) takes a short way that must read every form exactly as
the general way does; everything else (Latin-1 fields, a named charset) still takes that."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import pytest

from smsbridge.carriers.webhook import WebhookRequest, _utf8_pairs
from smsbridge.errors import BadRequest


def _form(body: bytes, content_type: str = "application/x-www-form-urlencoded") -> WebhookRequest:
    return WebhookRequest.build(
        method="POST",
        url="http://bridge/carriers/generic/t/inbound",
        path="/carriers/generic/t/inbound",
        headers={"Content-Type": content_type},
        query_string="",
        body=body,
        arrived_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_the_short_way_reads_a_form_as_parse_qsl_does() -> None:
    pieces = ["a", "b", "=", "&", "+", "%", "%2B", "%20", "%C3%A9", "%e2%82%ac", "%ZZ", "%4"]
    pieces += ["%C3", "%FF", "x y", "", ";", "%26", "%3D", "%00"]
    rng = random.Random(14)
    for _ in range(20_000):
        form = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 9)))
        try:
            expected: object = tuple(parse_qsl(form, keep_blank_values=True, errors="strict"))
        except UnicodeDecodeError:
            expected = UnicodeDecodeError
        try:
            got: object = _utf8_pairs(form)
        except UnicodeDecodeError:
            got = UnicodeDecodeError
        assert got == expected, form


def test_a_utf8_form_is_read_in_utf8() -> None:
    req = _form(b"from=%2B254712345678&text=caf%C3%A9+%E2%82%AC&id=&flag")
    assert req.form == (("from", "+254712345678"), ("text", "café €"), ("id", ""), ("flag", ""))


def test_a_field_that_is_not_utf8_is_read_as_latin1_and_the_others_as_utf8() -> None:
    req = _form(b"text=caf%E9&name=caf%C3%A9")  # Kannel's Latin-1 beside UTF-8
    assert req.form == (("text", "café"), ("name", "café"))


def test_a_form_in_a_named_charset_is_read_in_it() -> None:
    req = _form(b"text=caf%E9", "application/x-www-form-urlencoded; charset=ISO-8859-1")
    assert req.form == (("text", "café"),)


def test_a_form_not_valid_in_its_named_utf8_is_refused() -> None:
    with pytest.raises(BadRequest):
        _form(b"text=caf%E9", "application/x-www-form-urlencoded; charset=utf-8")


def test_raw_non_ascii_bytes_in_a_form_are_read_as_before() -> None:
    # not escaped at all: UTF-8 bytes on the wire (the general way reads them)
    assert _form("text=café".encode()).form == (("text", "café"),)
    assert _form("text=café".encode("latin-1")).form == (("text", "café"),)
