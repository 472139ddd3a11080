"""Phone numbers normalise as CHT's phone-number library does; logs only see masked numbers."""

from __future__ import annotations

import pytest

from smsbridge.phone import mask, normalize


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
