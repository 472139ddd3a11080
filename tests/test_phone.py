"""Phone numbers normalise as CHT's phone-number library does; logs only see masked numbers."""

from __future__ import annotations

import pytest

from smsbridge.phone import as_cht_keeps, mask, normalize


@pytest.mark.parametrize(
    ("number", "country", "validation", "expected"),
    [
        ("+9779841202020", 977, "full", "+9779841202020"),
        ("9841202020", 977, "full", "+9779841202020"),
        ("9841202020", "977", None, "+9779841202020"),
        ("+254712345678", 977, "full", "+254712345678"),
        ("0712345678", 254, "full", "+254712345678"),
        ("+97712312", 977, "full", None),
        ("984123", 977, "full", None),
        ("1-800-MICROSOFT", 1, "full", None),
        ("not a number", 254, "none", None),
        ("0712345678", None, "full", None),
        ("+9779841", 977, "none", "+9779841"),
    ],
)
def test_normalize(
    number: str, country: object, validation: str | None, expected: str | None
) -> None:
    assert normalize(number, country, validation) == expected  # type: ignore[arg-type]


def test_partial_validation_checks_length_only() -> None:
    assert normalize("+254700000000", 254, "partial") == "+254700000000"
    assert normalize("+2547", 254, "partial") is None


def test_mask_keeps_only_the_ends() -> None:
    assert mask("+254712345678") == "+2547*****678"
    assert "12345" not in mask("+254712345678")
    assert mask("") == ""
    assert mask("12345") == "12***"


@pytest.mark.parametrize(
    ("sender", "country", "validation", "kept"),
    [
        ("0712345678", 254, None, "+254712345678"),  # Kannel's %p, nationally
        ("712345678", 254, "full", "+254712345678"),  # no trunk prefix
        ("0712 345 678", "254", None, "+254712345678"),
        ("+254712345678", 254, None, "+254712345678"),
        ("0712345678", None, None, "0712345678"),  # no country code known: as written
        ("+254712345678", None, None, "+254712345678"),
        ("MPESA", 254, None, "MPESA"),  # an alphanumeric sender id
        ("40404", 254, None, "40404"),  # a short code CHT does not take for a number
        ("0712345678", True, None, "0712345678"),  # `true` is no country code (not 1)
        ("0712345678", [254], None, "0712345678"),  # a list either (and is not cached)
    ],
)
def test_a_sender_is_kept_as_cht_keeps_it(
    sender: str, country: object, validation: str | None, kept: str
) -> None:
    assert as_cht_keeps(sender, country, validation) == kept  # type: ignore[arg-type]
    assert as_cht_keeps(sender, country, validation) == kept  # type: ignore[arg-type]  (cached)
