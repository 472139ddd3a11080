"""Field coercion: CHT's `parseField(field, raw, key)` and the options it depends on."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smsbridge import phone
from smsbridge.smsparser.bikram import bs_to_epoch
from smsbridge.smsparser.js.crash import JsCrash
from smsbridge.smsparser.js.moment import moment_ms
from smsbridge.smsparser.js.numbers import (
    UNDEFINED,
    parse_num,
    standardise,
    strict_equal,
    strip_zero_width,
    to_string,
    truthy,
)
from smsbridge.smsparser.translate import Tables, translate


@dataclass(frozen=True)
class ParseOptions:
    """What CHT's parser reads besides the form and the text.

    `locale` is the message's locale (doc.locale) unless the doc carries its own;
    `settings_locale`, `default_country_code` and `phone_validation` are app settings;
    `timezone` is the CHT server's timezone; `translations` is `{locale: {key: text}}`."""

    locale: str | None = None
    settings_locale: str | None = None
    timezone: str = "UTC"
    default_country_code: str | int | None = None
    phone_validation: str | None = None
    translations: Tables | None = None

    @classmethod
    def from_settings(
        cls,
        app_settings: Mapping[str, Any] | None,
        *,
        locale: str | None = None,
        timezone: str = "UTC",
        translations: Tables | None = None,
    ) -> ParseOptions:
        """Options from CHT app_settings (`locale`, `default_country_code`, `phone_validation`)."""
        s = app_settings or {}
        return cls(
            locale=locale,
            settings_locale=s.get("locale") or None,
            timezone=timezone,
            default_country_code=s.get("default_country_code"),
            phone_validation=s.get("phone_validation"),
            translations=translations,
        )


DEFAULT_OPTIONS = ParseOptions()
_NON_DIGIT = re.compile("[^0-9]")


def field_type(field: Any) -> Any:
    return field.get("type") if isinstance(field, dict) else UNDEFINED


def _list(field: Any) -> Any:
    return field.get("list") if isinstance(field, dict) else None


def _list_crash(key: str) -> JsCrash:
    return JsCrash("form_definition", f"the list of field {key!r} is not a list of [value, label]")


def _index(item: Any, i: int, key: str) -> Any:
    """`item[i]` in JS; reading an index of null/undefined throws."""
    if item is None or item is UNDEFINED:
        raise _list_crash(key)
    if isinstance(item, list | str):
        return item[i] if i < len(item) else UNDEFINED
    if isinstance(item, dict):
        return item.get(str(i), UNDEFINED)
    return UNDEFINED


def _integer(raw: Any, field: Any, key: str, opts: ParseOptions) -> Any:
    cleaned = strip_zero_width(to_string(raw))
    items = _list(field)
    if truthy(items):
        if not isinstance(items, list):  # `field.list.find` is not a function
            raise _list_crash(key)
        for item in items:
            if to_string(_index(item, 0, key)) == cleaned:
                return translate(
                    _index(item, 1, key), None, opts.translations, opts.settings_locale
                )
        return None
    return parse_num(cleaned)


def _string(raw: Any, field: Any, key: str, opts: ParseOptions) -> Any:
    items = _list(field)
    if truthy(items):
        if not isinstance(items, list | str):  # `for (const item of field.list)` needs an iterable
            raise _list_crash(key)
        cleaned = strip_zero_width(raw)
        for item in items:
            if strict_equal(_index(item, 0, key), cleaned):
                return _index(item, 1, key)
        return raw
    if key in ("patient_id", "place_id"):
        return standardise(raw)
    return raw


def _date(raw: Any, field: Any, key: str, opts: ParseOptions) -> Any:
    return moment_ms(strip_zero_width(raw), opts.timezone)


def _bs_date(raw: Any, field: Any, key: str, opts: ParseOptions) -> Any:
    cleaned = standardise(raw)
    if not isinstance(cleaned, str):
        cleaned = to_string(cleaned)
    m = _NON_DIGIT.search(cleaned)
    parts: list[Any] = cleaned.split(m.group(0)) if m else [cleaned]
    parts += [UNDEFINED] * (3 - len(parts))
    return bs_to_epoch(parts[0], parts[1], parts[2], opts.timezone)


def _boolean(raw: Any, field: Any, key: str, opts: ParseOptions) -> Any:
    val = parse_num(strip_zero_width(raw))
    if val is None or val is UNDEFINED:
        return None
    if val == 1:
        return True
    if val == 0:
        return False
    return None


def _month(raw: Any, field: Any, key: str, opts: ParseOptions) -> Any:
    return parse_num(strip_zero_width(raw))


def _phone(raw: Any, field: Any, key: str, opts: ParseOptions) -> Any:
    s = standardise(raw)
    if not isinstance(s, str):
        s = to_string(s)
    normalized = phone.normalize(s, opts.default_country_code, opts.phone_validation)
    return normalized if normalized is not None else s


def _bs_part(raw: Any, field: Any, key: str, opts: ParseOptions) -> Any:
    return standardise(raw)


_PARSERS = {
    "integer": _integer,
    "string": _string,
    "date": _date,
    "bsDate": _bs_date,
    "boolean": _boolean,
    "month": _month,
    "phone_number": _phone,
    "bsYear": _bs_part,
    "bsMonth": _bs_part,
    "bsDay": _bs_part,
}


def parse_field(field: Any, raw: Any, key: str, options: ParseOptions | None = None) -> Any:
    """CHT `parseField`: unknown types return raw unchanged; undefined stays undefined;
    '' becomes None; otherwise the type's rule."""
    ftype = field.get("type") if field.__class__ is dict else field_type(field)
    parser = _PARSERS.get(ftype) if ftype.__class__ is str else None
    if parser is None:
        return raw
    if raw is UNDEFINED:
        return UNDEFINED
    if isinstance(raw, str) and raw == "":
        return None
    return parser(raw, field, key, options or DEFAULT_OPTIONS)
