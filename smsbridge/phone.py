"""Phone numbers the way CHT's `@medic/phone-number` normalises them (spec 11.8), and masking
for logs. The only module that imports `phonenumbers`."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, shortnumberinfo

_LETTERS = re.compile("[a-z]", re.IGNORECASE)


def _region(default_country_code: str | int | None) -> str:
    try:
        code = int(str(default_country_code).strip())
    except (TypeError, ValueError):
        return "ZZ"
    return phonenumbers.region_code_for_country_code(code)


def normalize(
    number: str,
    default_country_code: str | int | None = None,
    phone_validation: str | None = None,
) -> str | None:
    """E.164 for a number valid under `phone_validation` (`full` by default, `partial` checks
    length only, `none` accepts anything libphonenumber can parse); the national format for a
    valid short number; None when invalid. Letters are never accepted (`1-800-MICROSOFT`)."""
    if not isinstance(number, str) or _LETTERS.search(number):
        return None
    try:
        parsed = phonenumbers.parse(number, _region(default_country_code), keep_raw_input=True)
    except NumberParseException:
        return None
    validation = (phone_validation or "").lower()
    if validation == "partial":
        ok = phonenumbers.is_possible_number(parsed)
    elif validation == "none":
        ok = True
    else:
        ok = phonenumbers.is_valid_number(parsed)
    if ok:
        return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    if shortnumberinfo.is_valid_short_number(parsed):
        return phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL)
    return None


def mask(number: str | None) -> str:
    """A phone number safe for logs: keep the first 5 and last 3 characters (`+2547****678`)."""
    if not number:
        return ""
    s = str(number)
    if len(s) <= 8:
        return s[:2] + "*" * max(len(s) - 2, 0)
    return s[:5] + "*" * (len(s) - 8) + s[-3:]
