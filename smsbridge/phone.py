"""Phone numbers the way CHT's `@medic/phone-number` normalises them (and keeps a sender),
written in a route's format for a carrier, and masked for logs. The only module that imports
`phonenumbers`."""

from __future__ import annotations

import functools
import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, shortnumberinfo

from smsbridge.settings import NUMBER_FORMATS

_LETTERS = re.compile("[a-z]", re.IGNORECASE)
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_NON_DIGITS = re.compile(r"[^0-9]")
E164, NATIONAL, DIGITS = NUMBER_FORMATS


def _region(default_country_code: object) -> str:
    """libphonenumber's region for the country code, looked up the way JS does: by the code's
    string form ("977" and 977 work; "0977" or " 977" do not)."""
    if isinstance(default_country_code, bool) or default_country_code is None:
        return "ZZ"
    if isinstance(default_country_code, float) and default_country_code.is_integer():
        default_country_code = int(default_country_code)
    key = str(default_country_code)
    if not key.isascii() or not key.isdigit() or key != str(int(key)):
        return "ZZ"
    return phonenumbers.region_code_for_country_code(int(key))


def normalize(
    number: str,
    default_country_code: str | int | None = None,
    phone_validation: str | None = None,
) -> str | None:
    """CHT's `phone-number.normalize`: None unless the number passes `phone_validation`
    (`full` by default: a valid number; `partial`: a possible length; `none`: anything
    libphonenumber can parse) and has no letters (`1-800-MICROSOFT`). A valid short number is
    formatted nationally (`112`), anything else as E.164."""
    if not isinstance(number, str) or _LETTERS.search(number):
        return None
    region = _region(default_country_code)
    if region == "ZZ" and not number.startswith(("+", "\uff0b")):
        return None  # libphonenumber (JS) needs a leading plus when there is no default region
    try:
        parsed = phonenumbers.parse(number, region, keep_raw_input=True)
    except NumberParseException:
        return None
    if not isinstance(phone_validation, str | None):
        return None
    validation = (phone_validation or "").lower()
    if validation == "partial":
        ok = phonenumbers.is_possible_number(parsed)
    elif validation == "none":
        ok = True
    else:
        ok = phonenumbers.is_valid_number(parsed)
    if not ok:
        return None
    if shortnumberinfo.is_valid_short_number(parsed):
        return phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


def as_cht_keeps(
    number: str,
    default_country_code: str | int | None = None,
    phone_validation: str | None = None,
) -> str:
    """An SMS sender the way CHT keeps the `from` of an SMS it is given (its records service:
    `normalize` under its app settings when that gives a number, else the number as given): a
    national `0712345678` or `712345678` is `+254712345678` under country code 254, while a short
    code or an alphanumeric sender id stays as the carrier wrote it. CHT applies the same to
    what the bridge submits, so this is the number CHT files the report under and sends its
    replies to. Senders repeat (the same health workers), so answers are cached."""
    try:
        return _as_cht_keeps(number, default_country_code, phone_validation)
    except TypeError:  # a setting that is a JSON list or object: not cacheable
        return normalize(number, default_country_code, phone_validation) or number


@functools.lru_cache(maxsize=4096, typed=True)  # typed: `True` is not country code 1
def _as_cht_keeps(
    number: str, default_country_code: str | int | None, phone_validation: str | None
) -> str:
    return normalize(number, default_country_code, phone_validation) or number


def written(number: str, number_format: str) -> str:
    """`number` the way a route's `format` (smsbridge/outbound/routing.py) asks a carrier to get
    it: `e164` (`+254712345678`), `national` (libphonenumber's national format, digits only:
    `0712345678`) or `digits` (E.164 without its plus: `254712345678`). Only an international
    number (a leading `+`) that libphonenumber can parse is rewritten; anything else (a short
    code, an alphanumeric sender id, a number already written nationally) comes back as is."""
    if number_format == E164 and _E164.fullmatch(number):
        return number  # what CHT gives: nothing to do
    if number_format not in NUMBER_FORMATS or not number.lstrip().startswith("+"):
        return number
    try:
        parsed = phonenumbers.parse(number, None)
    except NumberParseException:
        return number
    if number_format == NATIONAL:
        return _NON_DIGITS.sub("", phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL))
    e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    return e164.lstrip("+") if number_format == DIGITS else e164


def mask(number: str | None) -> str:
    """A phone number safe for logs: keep the first 5 and last 3 characters (`+2547****678`)."""
    if not number:
        return ""
    s = str(number)
    if len(s) <= 8:
        return s[:2] + "*" * max(len(s) - 2, 0)
    return s[:5] + "*" * (len(s) - 8) + s[-3:]
