"""Text -> report, exactly as CHT's SMS parser makes it (its recorded
behaviour: tests/vectors/smsparser.json).

CHT-level functions (names follow CHT's smsparser): `get_form_code`, `is_muvuku_format`,
`parse`, `parse_array`, `parse_field`, `is_compact`, plus `to_stored` (what CouchDB would keep).
Results are JS-like: `UNDEFINED` for JS undefined, float('nan') for NaN. Where CHT itself
throws, these raise `JsCrash`.

Bridge-level: `parse_sms(text, forms, options)` returns a `Report` or a `FormError` and never
raises."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smsbridge.errors import FormError
from smsbridge.smsparser.bikram import bs_to_epoch
from smsbridge.smsparser.fields import DEFAULT_OPTIONS, ParseOptions, parse_field
from smsbridge.smsparser.formdef import CompiledForm, compiled
from smsbridge.smsparser.js.crash import JsCrash
from smsbridge.smsparser.js.numbers import (
    JS_WS,
    JS_WS_SET,
    OBJECT_PROTOTYPE,
    PROTO,
    UNDEFINED,
    JsFunction,
    js_get,
    js_set,
    js_upper,
    number_to_string,
    standardise,
    strip_zero_width,
    truthy,
)
from smsbridge.smsparser.muvuku import MUVUKU_SHAPE, parse_javarosa, parse_muvuku
from smsbridge.smsparser.textforms import is_compact as _is_compact
from smsbridge.smsparser.textforms import (
    map_tiny_labels,
    parse_compact,
    parse_labelled,
)
from smsbridge.smsparser.translate import error_message

__all__ = [
    "UNDEFINED",
    "FormError",
    "JsCrash",
    "ParseOptions",
    "Report",
    "crash_error",
    "find_form",
    "get_form_code",
    "is_compact",
    "is_muvuku_format",
    "parse",
    "parse_array",
    "parse_field",
    "parse_sms",
    "to_stored",
]

_CODE_DELIMS = set(JS_WS) | set("!-,:#")


@dataclass(frozen=True)
class Report:
    """A message CHT would turn into a report. `code` is the form code (settings key), `format`
    the sub-parser used (muvuku, javarosa, textforms, compact; None for an unsupported
    header), `fields` the stored JSON of CHT's parse result: what createByForm copies into the
    record's `fields`, plus `_extra_fields: true` when a muvuku message had surplus values."""

    code: str
    form: Mapping[str, Any]
    format: str | None
    fields: dict[str, Any]


def get_form_code(message: Any) -> str | None:
    """Spec 3. None where CHT returns undefined."""
    if not isinstance(message, str):
        return None
    pieces = message.split("!")
    if len(pieces) >= 3:
        return js_upper(pieces[1])
    s = message.lstrip(JS_WS)
    end = 0
    while end < len(s) and s[end] not in _CODE_DELIMS:
        end += 1
    return js_upper(s[:end]) if end else None


def is_muvuku_format(message: Any) -> bool:
    return isinstance(message, str) and MUVUKU_SHAPE.match(message) is not None


def is_compact(form_def: Any, message: Any, locale: str | None = None,
               options: ParseOptions | None = None) -> bool:  # fmt: skip
    """Spec 4.5 (`message` is already code-stripped)."""
    opts = options or DEFAULT_OPTIONS
    if not truthy(form_def) or not isinstance(form_def, dict) or not isinstance(message, str):
        return False
    return _is_compact(compiled(form_def), message, locale, opts.translations, opts.settings_locale)


def _locale(doc: Mapping[str, Any], opts: ParseOptions) -> str | None:
    loc = doc.get("locale")
    return loc if isinstance(loc, str) and loc else opts.locale


def _read(form: CompiledForm, message: str, locale: str | None, opts: ParseOptions
          ) -> tuple[str | None, dict[str, Any]]:  # fmt: skip
    """Choose the sub-parser and read raw values keyed by field key."""
    head = MUVUKU_SHAPE.match(message)
    if head is not None:
        kind = head.group(1).upper()
        if kind not in ("1", "J1"):
            return None, {}
        if form.has_null_field:
            raise JsCrash("form_definition", "A field of this form has no definition.")
        if kind == "1":
            return "muvuku", parse_muvuku(form, message)
        return "javarosa", parse_javarosa(form, message, opts.translations, opts.settings_locale)
    msg = form.strip_form_code(message)
    if _is_compact(form, msg, locale, opts.translations, opts.settings_locale):
        return "compact", parse_compact(form, msg)
    data = parse_labelled(msg, opts.timezone)
    map_tiny_labels(form, data, locale, opts.translations, opts.settings_locale)
    return "textforms", data


def _deep_set(obj: Any, parts: list[str], value: Any) -> None:
    for i, key in enumerate(parts):
        last = i == len(parts) - 1
        if obj is UNDEFINED or obj is None:
            raise JsCrash("form_definition", "Conflicting dotted field keys in this form.")
        if not isinstance(obj, dict):  # a JS primitive: the property write is lost
            if last:
                return
            obj = UNDEFINED
            continue
        if last:
            js_set(obj, key, value)
            return
        current = js_get(obj, key)
        if not truthy(current):
            if key == "__proto__":
                return
            current = obj[key] = {}
        obj = current


def parse_with_format(form_def: Any, doc: Any, options: ParseOptions | None = None
                      ) -> tuple[str | None, dict[str, Any]]:  # fmt: skip
    """`parse` that also says which sub-parser was used."""
    opts = options or DEFAULT_OPTIONS
    if (
        not truthy(form_def)
        or not isinstance(form_def, dict)
        or not isinstance(doc, dict)
        or not truthy(doc.get("message", UNDEFINED))
        or not truthy(form_def.get("fields", UNDEFINED))
    ):
        return None, {}
    message = doc["message"]
    if not isinstance(message, str):
        return None, {}
    form = compiled(form_def)
    fmt, data = _read(form, message, _locale(doc, opts), opts)
    if fmt is None:
        return None, {}
    omitted = fmt in ("muvuku", "javarosa")
    result: dict[str, Any] = {}
    fields = form.fields
    for key, path in zip(form.keys, form.paths, strict=True):
        raw = data[key] if key in data else js_get(data, key)
        if omitted or truthy(raw):
            if fields[key] is None:
                raise JsCrash("form_definition", f"Field {key!r} of this form has no definition.")
            value = parse_field(fields[key], raw, key, opts)
            if len(path) == 1:
                if key == "__proto__":
                    js_set(result, key, value)
                else:
                    result[key] = value
            else:
                _deep_set(result, path, value)
    if form.aggregate_key is not None:
        parts: dict[str, Any] = {"bsYear": UNDEFINED, "bsMonth": 1, "bsDay": 1}
        for key, ftype in zip(form.keys, form.types, strict=True):
            if isinstance(ftype, str) and ftype in parts:  # a type may be any JSON value
                parts[ftype] = standardise(js_get(data, key))
        if truthy(parts["bsYear"]):
            result[form.aggregate_key] = bs_to_epoch(
                parts["bsYear"], parts["bsMonth"], parts["bsDay"], opts.timezone
            )
    if data.get("_extra_fields") is True:
        result["_extra_fields"] = True
    return fmt, result


def parse(form_def: Any, doc: Any, options: ParseOptions | None = None) -> dict[str, Any]:
    """CHT `smsparser.parse(def, doc)`: doc has `message` and optionally `locale`."""
    return parse_with_format(form_def, doc, options)[1]


def parse_array(form_def: Any, doc: Any, options: ParseOptions | None = None) -> list[Any]:
    """CHT `smsparser.parseArray(def, doc)`: [sent_timestamp, from, raw values in field order]."""
    opts = options or DEFAULT_OPTIONS
    if not isinstance(form_def, dict) or not truthy(form_def.get("fields", UNDEFINED)):
        return []
    message = doc.get("message") if isinstance(doc, dict) else None
    if not isinstance(message, str):
        raise JsCrash("parse_error", "The message is not text.")
    form = compiled(form_def)
    head = MUVUKU_SHAPE.match(message)
    if head is not None:
        kind = head.group(1).upper()
        if kind == "1":
            data = parse_muvuku(form, message)
        elif kind == "J1":
            data = parse_javarosa(form, message, opts.translations, opts.settings_locale)
        else:
            raise JsCrash("unsupported_header", "This message header is not supported.")
    elif _is_compact(form, form.strip_form_code(message), _locale(doc, opts), opts.translations,
                     opts.settings_locale):  # fmt: skip
        data = parse_compact(form, message)  # CHT hands parseCompact the unstripped message
    else:
        raise JsCrash("parse_error", "parseArray cannot read labelled textforms.")
    values = [js_get(data, k) for k in form.keys]
    return [doc.get("sent_timestamp", UNDEFINED), doc.get("from", UNDEFINED), *values]


def to_stored(obj: Any) -> Any:
    """The JSON CouchDB would store: undefined keys dropped, NaN/Infinity -> None."""
    if isinstance(obj, dict):
        return {
            k: to_stored(v)
            for k, v in obj.items()
            if v is not UNDEFINED and not isinstance(v, JsFunction) and k != PROTO
        }
    if isinstance(obj, list):
        return [None if v is UNDEFINED or isinstance(v, JsFunction) else to_stored(v) for v in obj]
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        if obj.is_integer() and abs(obj) < 1e21:
            return int(number_to_string(obj))  # the digits JSON.stringify writes
        return obj
    if obj is OBJECT_PROTOTYPE:
        return {}
    return obj


def crash_error(crash: JsCrash, code: str | None) -> FormError:
    """The FormError for a message CHT itself would fail on, with a reply the sender can act
    on (CHT would throw and store nothing)."""
    return FormError(_reply(crash, code), code=f"sys.{crash.code}")


def _reply(crash: JsCrash, code: str | None) -> str:
    if crash.code == "empty_compact":
        return (
            f"Message for form {code} has no values. Send the values after the form code, "
            f"separated by spaces, e.g. '{code} value1 value2'."
        )
    if crash.code == "form_definition":
        return (
            f"Form {code} cannot be read by SMS at the moment ({crash.detail}). "
            "Please tell your supervisor."
        )
    return f"Message for form {code} could not be read: {crash.detail}"


def find_form(message: str, forms: Mapping[str, Any]) -> tuple[str | None, Any, str]:
    """createByForm's form lookup: `get_form_code`, then, when no form has that
    code, one retry with zero-width characters removed from it. Returns the code, its
    definition (None when there is none) and the message with the code so cleaned."""
    code = get_form_code(message)
    form_def = forms.get(code) if code else None
    if code and form_def is None:
        clean = strip_zero_width(code)
        if clean in forms:
            return clean, forms[clean], message.replace(code, clean, 1)
    return code, form_def, message


CHT_ENGLISH = {
    "sys.empty": "Message appears empty.",
    "sys.form_not_found": "Form '{{form}}' not found.",
}
"""CHT's English texts of the errors it stores itself, used when its translations lack them."""


def _cht_text(opts: ParseOptions, code: str, context: Mapping[str, Any] | None = None) -> str:
    """The error text CHT would store: its translation for the message's locale, rendered as
    CHT renders it (smsbridge/smsparser/translate.py)."""
    return error_message(
        code, CHT_ENGLISH[code], opts.locale, opts.translations, opts.settings_locale, context
    )


def parse_sms(
    text: str, forms: Mapping[str, Any], options: ParseOptions | None = None
) -> Report | FormError:
    """Find the form (with CHT's zero-width retry) and parse the message."""
    opts = options or DEFAULT_OPTIONS
    try:
        if (
            not isinstance(text, str)
            or not text
            or (text[0] in JS_WS_SET and text.strip(JS_WS) == "")
        ):
            return FormError(_cht_text(opts, "sys.empty"), code="sys.empty")
        code, form_def, text = find_form(text, forms)
        if not code or not isinstance(form_def, dict):
            reply = _cht_text(opts, "sys.form_not_found", {"form": code or UNDEFINED})
            return FormError(reply, code="sys.form_not_found")
        doc = {"message": text, "locale": opts.locale}
        fmt, parsed = parse_with_format(form_def, doc, opts)
        return Report(code=code, form=form_def, format=fmt, fields=to_stored(parsed))
    except JsCrash as exc:
        return crash_error(exc, code)
    except Exception as exc:  # the bridge never crashes on a message
        return FormError(f"This message could not be read ({type(exc).__name__}).",
                         code="sys.parse_error")  # fmt: skip
