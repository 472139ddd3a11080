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
from typing import Any

from smsbridge.chtsim.contacts import normalize_phone
from smsbridge.smsparser import parser
from smsbridge.smsparser.fields import ParseOptions
from smsbridge.smsparser.formdef import js_key_order
from smsbridge.smsparser.js.moment import moment_ms
from smsbridge.smsparser.js.numbers import UNDEFINED, js_trim, to_number
from smsbridge.smsparser.js.numbers import truthy as js_truthy
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
    translations: Mapping[str, Mapping[str, str]],
    key: str,
    locale: str,
    context: Mapping[str, Any] | None = None,
) -> str:
    """CHT's `translate(key, locale, context)`: the text for the locale (else `en`, else the
    key itself) with `{{name}}` filled from `context`."""
    text = str(translate_key(key, locale, translations, None))

    def fill(match: re.Match[str]) -> str:
        value = (context or {}).get(match.group(1).strip())
        return "" if value is None else str(value)

    return re.sub(r"{{([\s\S]+?)}}", fill, text)


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
    meta = body.get("_meta")
    if not js_truthy(meta):
        raise RecordError("Missing _meta property.")
    form = meta.get("form") if isinstance(meta, dict) else None
    if not js_truthy(form):
        raise RecordError("Missing required field: form")
    if not isinstance(form, str):
        raise TypeError("form.toUpperCase is not a function")
    code = form.upper()
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
                value = moment_ms(value, timezone)
            elif field.get("type") == "boolean" and _is_number(value) and value in (0, 1):
                value = bool(value)
        parsed[key.lower()] = value
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
        if reference is not None:
            refid = parsed.get(reference)
            record["refid"] = refid.upper() if isinstance(refid, str) else refid
        for key in js_key_order(list(fields_def)):
            _merge(key.split("."), fields, parsed)
        errors_ctx = _validate(fields_def, parsed)
        errors.extend(errors_ctx)
        if parsed.get("_extra_fields"):
            errors.append({"code": "extra_fields"})
    if isinstance(message, str) and not js_trim(message):
        errors.append({"code": "sys.empty"})
    if form_def is None and settings.get("forms_only_mode"):
        errors.append({"code": "sys.form_not_found", "form": code or ""})
    locale = _locale(fields, sms_message, settings)
    for error in errors:
        context = {k: v for k, v in error.items() if k != "code"}
        record["errors"].append(
            {
                "code": error["code"],
                "message": translate(translations, error["code"], locale, context),
            }
        )
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
        errors.append({"code": "sys.missing_fields", "fields": ",".join(missing)})
    return errors


def _locale(
    fields: Mapping[str, Any], sms_message: Mapping[str, Any], settings: Mapping[str, Any]
) -> str:
    for candidate in (fields.get("locale"), sms_message.get("locale"), settings.get("locale")):
        if isinstance(candidate, str) and candidate:
            return candidate
    return "en"
