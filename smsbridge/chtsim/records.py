"""CHT's records service: `createByForm` (a raw SMS) and `createRecordByJSON` (a pre-parsed
form). Parsing itself is the PARSER's CHT-level `smsbridge.smsparser.parser`.

Both return the data_record CHT would save (before transitions), in stored form: undefined
keys dropped, NaN as null. Request-level problems raise `RecordError(public message)`, which the
controller answers with 500 "Server error" and the message as details.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from smsbridge.chtsim.contacts import normalize_phone
from smsbridge.smsparser import parser
from smsbridge.smsparser.fields import ParseOptions
from smsbridge.smsparser.js.moment import moment_ms
from smsbridge.smsparser.js.numbers import (
    UNDEFINED,
    js_get,
    js_lower,
    js_trim,
    js_upper,
    to_number,
    to_string,
)
from smsbridge.smsparser.js.numbers import truthy as js_truthy
from smsbridge.smsparser.js.objects import js_key_order
from smsbridge.smsparser.js.timevalues import NAN
from smsbridge.smsparser.translate import translate as translate_key

__all__ = ["RecordError", "create_by_form", "create_record_by_json", "translate"]


class RecordError(Exception):
    """A request CHT's records service refuses (answered as 500 with this public message)."""


def reported_date(value: Any, now_ms: int, timezone: str) -> Any:
    """`reported_date` as createByForm reads it: a number as is; a string with 13+ consecutive
    digits through Number(); other strings through moment; NaN or 0 keep now."""
    result: Any
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return now_ms
    if isinstance(value, int | float):
        result = value
    elif re.search(r"\d{13,}", value):
        result = to_number(value)
    else:
        result = moment_ms(value, timezone)
    return result if js_truthy(result) else now_ms


def translate(
    translations: Mapping[str, Mapping[str, Any]],
    key: str,
    locale: Any,
    context: Mapping[str, Any] | None = None,
    *,
    settings_locale: Any = None,
) -> str:
    """CHT's `config.translate(key, locale, context)`: the text for the locale (else `en`, else
    the key itself) rendered as a lodash template with `context`; a template naming a variable
    the context lacks is kept unchanged. A locale that is an object is the context instead."""
    return to_string(translate_key(key, locale, translations, settings_locale, context))


def _empty(value: Any) -> bool:
    """The records service's `empty`: only '', null and undefined."""
    return value is UNDEFINED or value is None or value == ""


def date_value(value: Any, now_ms: int, timezone: str) -> Any:
    """`moment(value).valueOf()` as createRecordByJSON converts a date field. An object is read
    as moment's `{year, month, day|date, hour, minute, second, millisecond}` (unit aliases
    too): the date parts not given before the first one given are today's, the rest zero;
    `{}` and `[]` are now. Everything else as the parser's moment."""
    if isinstance(value, dict | list) and not value:
        return now_ms
    if not isinstance(value, dict):
        return moment_ms(value, timezone)
    units: dict[str, Any] = {}
    for key, item in value.items():
        unit = _UNITS.get(key) or _UNITS.get(js_lower(key))
        if unit is not None:
            units[unit] = item
    day = units.get("day", UNDEFINED)
    if day is UNDEFINED:
        day = units.get("date", UNDEFINED)
    raw = [units.get(u, UNDEFINED) for u in ("year", "month")]
    raw += [day] + [units.get(u, UNDEFINED) for u in ("hour", "minute", "second", "ms")]
    parts: list[Any] = [
        (_parse_int(v) if js_truthy(v) else v) for v in raw
    ]  # `obj && parseInt(obj, 10)`
    today = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(_zone(timezone))
    current = (today.year, today.month - 1, today.day)
    i = 0
    while i < 3 and (parts[i] is UNDEFINED or parts[i] is None):
        parts[i] = current[i]
        i += 1
    for j in range(i, 7):
        if parts[j] is UNDEFINED or parts[j] is None:
            parts[j] = 1 if j == 2 else 0
    numbers = [to_number(v) for v in parts]
    if any(isinstance(n, float) and not math.isfinite(n) for n in numbers):
        return NAN
    return moment_ms([int(n) for n in numbers], timezone)


_UNITS = {
    **dict.fromkeys(("y", "year", "years"), "year"),
    **dict.fromkeys(("M", "month", "months"), "month"),
    **dict.fromkeys(("d", "day", "days"), "day"),
    **dict.fromkeys(("D", "date", "dates"), "date"),
    **dict.fromkeys(("h", "hour", "hours"), "hour"),
    **dict.fromkeys(("m", "minute", "minutes"), "minute"),
    **dict.fromkeys(("s", "second", "seconds"), "second"),
    **dict.fromkeys(("ms", "millisecond", "milliseconds"), "ms"),
}


def _parse_int(value: Any) -> Any:
    """JS `parseInt(value, 10)`."""
    m = re.match(r"\s*([+-]?\d+)", to_string(value))
    return int(m.group(1)) if m else NAN


def _zone(timezone: str) -> Any:
    return UTC if timezone.upper() == "UTC" else ZoneInfo(timezone)


# -- the service ---------------------------------------------------------------------------------


def create_by_form(
    body: Mapping[str, Any],
    *,
    settings: Mapping[str, Any],
    translations: Mapping[str, Mapping[str, str]],
    now_ms: int,
    locale: str | None = None,
    timezone: str = "UTC",
) -> dict[str, Any]:
    """`createByForm(body, {locale})`: the data_record for a raw SMS."""
    if "from" not in body:
        raise RecordError("Missing required value: from")
    if "message" not in body:
        raise RecordError("Missing required field: message")
    message = body["message"]
    forms = settings.get("forms") or {}
    doc = dict(body)
    code: str | None = None
    form_def: Any = None
    if isinstance(message, str):
        code, form_def, doc["message"] = parser.find_form(message, forms)
    undefined = UNDEFINED
    sms_message = {
        "type": "sms_message",
        "message": message,
        "form": code if code is not None else undefined,
        "reported_date": body.get("sent_timestamp", undefined),
        "locale": body.get("locale") or locale or undefined,
        "from": body["from"],
        "gateway_ref": body.get("gateway_ref", undefined),
    }
    parsed: Mapping[str, Any] | None = None
    if code and form_def is not None:
        parsed = parser.parse(form_def, doc, _options(settings, translations, timezone))
    return _record(
        settings,
        translations,
        form_def,
        code,
        parsed,
        sms_message,
        from_=body["from"],
        reported=body.get("sent_timestamp"),
        message=message,
        now_ms=now_ms,
        timezone=timezone,
    )


def create_record_by_json(
    body: Mapping[str, Any],
    *,
    settings: Mapping[str, Any],
    translations: Mapping[str, Mapping[str, str]],
    now_ms: int,
    timezone: str = "UTC",
) -> dict[str, Any]:
    """`createRecordByJSON(body)`: the data_record for a pre-parsed JSON form."""
    meta = body.get("_meta", UNDEFINED)
    if _empty(meta):
        raise RecordError("Missing _meta property.")
    form = js_get(meta, "form") if isinstance(meta, dict) else UNDEFINED
    if _empty(form):
        raise RecordError("Missing required field: form")
    if not isinstance(form, str):
        raise TypeError("options.form.toUpperCase is not a function")
    code = js_upper(form)
    form_def = (settings.get("forms") or {}).get(code)
    if form_def is None:
        raise RecordError(f"Form not found: {code}")
    assert isinstance(meta, dict)
    sms_message = dict(meta)
    sms_message["form"] = code
    fields_def = form_def.get("fields") or {}
    parsed: dict[str, Any] = {}
    for key in js_key_order([k for k in body if k != "_meta"]):
        value = body[key]
        field = fields_def.get(key)
        if isinstance(field, dict):
            if field.get("type") == "date":
                value = date_value(value, now_ms, timezone)
            elif field.get("type") == "boolean" and _is_number(value) and value in (0, 1):
                value = bool(value)
        parsed[js_lower(key)] = value
    return _record(
        settings,
        translations,
        form_def,
        code,
        parsed,
        sms_message,
        from_=meta.get("from", _ABSENT),
        reported=meta.get("reported_date"),
        message=meta.get("message"),
        now_ms=now_ms,
        timezone=timezone,
    )


_ABSENT = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _options(
    settings: Mapping[str, Any], translations: Mapping[str, Mapping[str, str]], timezone: str
) -> ParseOptions:
    locale = settings.get("locale")
    validation = settings.get("phone_validation")
    return ParseOptions(
        settings_locale=locale if isinstance(locale, str) else None,
        timezone=timezone,
        default_country_code=settings.get("default_country_code"),
        phone_validation=validation if isinstance(validation, str) else None,
        translations=translations,
    )


def _record(
    settings: Mapping[str, Any],
    translations: Mapping[str, Mapping[str, str]],
    form_def: Mapping[str, Any] | None,
    code: str | None,
    parsed: Mapping[str, Any] | None,
    sms_message: dict[str, Any],
    *,
    from_: Any,
    reported: Any,
    message: Any,
    now_ms: int,
    timezone: str,
) -> dict[str, Any]:
    record: dict[str, Any] = {"type": "data_record"}
    if from_ is not _ABSENT:
        record["from"] = normalize_phone(dict(settings), from_) or from_
    if (form_def is not None or settings.get("forms_only_mode")) and code is not None:
        record["form"] = code
    record.update(errors=[], tasks=[], fields={})
    record["reported_date"] = reported_date(reported, now_ms, timezone)
    record["sms_message"] = sms_message
    errors: list[dict[str, Any]] = []
    fields: dict[str, Any] = record["fields"]
    if form_def is not None and parsed is not None:
        fields_def = form_def.get("fields") or {}
        reference = form_def.get("facility_reference")
        if js_truthy(reference):  # undefined (no key in the stored doc) when the field is absent
            refid = parsed.get(to_string(reference), UNDEFINED)
            record["refid"] = js_upper(refid) if isinstance(refid, str) and refid else refid
        for key in js_key_order(list(fields_def)):
            _merge(key.split("."), fields, parsed)
        errors_ctx = _validate(fields_def, parsed)
        errors.extend(errors_ctx)
        if parsed.get("_extra_fields"):
            errors.append({"code": "extra_fields"})
    if isinstance(message, str) and not js_trim(message):
        errors.append({"code": "sys.empty"})
    if form_def is None and settings.get("forms_only_mode"):
        errors.append(
            {"code": "sys.form_not_found", "form": code if code is not None else UNDEFINED}
        )
    locale = _locale(fields, sms_message, settings)
    for error in errors:
        context = {k: v for k, v in error.items() if k != "code"}
        message_text = translate(
            translations,
            error["code"],
            locale,
            context,
            settings_locale=settings.get("locale"),
        )
        record["errors"].append({"code": error["code"], "message": message_text})
    return dict(parser.to_stored(record))


def _merge(path: list[str], target: dict[str, Any], data: Any) -> None:
    """CHT's `smsparser.merge`: a plain key is copied even when undefined; a dotted key only
    when the parsed object has a truthy value at its first part."""
    value = data.get(path[0], UNDEFINED) if isinstance(data, Mapping) else UNDEFINED
    if len(path) == 1:
        target[path[0]] = value
    elif js_truthy(value):
        if not js_truthy(target.get(path[0], UNDEFINED)):
            target[path[0]] = {}
        if isinstance(target[path[0]], dict):
            _merge(path[1:], target[path[0]], value)


def _validate(fields_def: Mapping[str, Any], parsed: Mapping[str, Any]) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    missing: list[str] = []
    for key in js_key_order(list(fields_def)):
        field = fields_def[key] if isinstance(fields_def[key], dict) else {}
        value = parsed.get(key, UNDEFINED)
        absent = value is UNDEFINED or value is None
        if field.get("required") and absent:
            missing.append(key)
        elif not absent and not field.get("list"):
            expected = field.get("type")
            wrong = (
                (
                    expected == "integer"
                    and not (
                        _is_number(value) and math.isfinite(value) and float(value).is_integer()
                    )
                )
                or (expected == "string" and not isinstance(value, str))
                or (expected == "boolean" and not isinstance(value, bool))
                or (expected == "complex" and not isinstance(value, dict | list))
            )
            if wrong:
                errors.append({"code": "sys.incorrect_type", "key": key, "expectedType": expected})
    if missing:
        errors.append({"code": "sys.missing_fields", "fields": missing})  # a list: "a,b"
    return errors


def _locale(
    fields: Mapping[str, Any], sms_message: Mapping[str, Any], settings: Mapping[str, Any]
) -> Any:
    """The records service's `getLocale`: the first truthy of the form's `locale` field, the
    message's locale and the settings locale, else 'en'; whatever its type (a number is looked
    up as its text, an object becomes the template context: see `translate`)."""
    for candidate in (
        fields.get("locale", UNDEFINED),
        sms_message.get("locale", UNDEFINED),
        settings.get("locale", UNDEFINED),
    ):
        if js_truthy(candidate):
            return candidate
    return "en"
