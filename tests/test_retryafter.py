"""The one Retry-After parser, used by the CHT client and the carrier modules."""

from __future__ import annotations

import httpx
import pytest

from smsbridge.retryafter import retry_after

NOW = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), (" 5 ", 5.0), ("1.5", 1.5), ("0", 0.0), ("-3", 0.0)],
)
def test_delay_seconds_are_read_as_seconds(value: str, seconds: float) -> None:
    assert retry_after({"retry-after": value}, NOW) == seconds


def test_an_http_date_is_read_as_seconds_from_now() -> None:
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:30:00 GMT"}, NOW) == 120.0


def test_an_http_date_in_the_past_means_at_once() -> None:
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:00:00 GMT"}, NOW) == 0.0


def test_an_http_date_in_minus_zero_zone_is_utc() -> None:
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:29:00 -0000"}, NOW) == 60.0


@pytest.mark.parametrize("headers", [{}, {"retry-after": ""}, {"retry-after": "soon"}])
def test_missing_or_unreadable_is_none(headers: dict[str, str]) -> None:
    assert retry_after(headers, NOW) is None


def test_reads_an_httpx_response_s_headers_whatever_the_case() -> None:
    response = httpx.Response(429, headers={"Retry-After": "7"})
    assert retry_after(response.headers) == 7.0
