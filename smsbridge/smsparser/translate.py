"""CHT's `config.translate` as the parser sees it. A string key is looked up in the
`{locale: {key: text}}` tables (then `en`, then the key itself) and the result is run through a
lodash template with `{{ }}` interpolation; a translation object resolves by locale, `default`,
`en`, the first `translations[]` entry, then its first value."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from smsbridge.smsparser.js.numbers import NOT_LT, UNDEFINED, to_number, to_string, truthy

Tables = Mapping[str, Mapping[str, Any]]

# Object.prototype members: a plain JS property read on a table finds these.
_INHERITED = {
    "constructor": "function Object() { [native code] }",
    "__proto__": "[object Object]",
    **{
        name: f"function {name}() {{ [native code] }}"
        for name in (
            "toString", "toLocaleString", "valueOf", "hasOwnProperty", "isPrototypeOf",
            "propertyIsEnumerable", "__defineGetter__", "__defineSetter__", "__lookupGetter__",
            "__lookupSetter__",
        )
    },
}  # fmt: skip
_INTERPOLATE = re.compile(rf"\{{\{{({NOT_LT}+?)\}}\}}")
_STRING = re.compile(r"""\s*(?:'((?:[^'\\\n]|\\.)*)'|"((?:[^"\\\n]|\\.)*)")\s*\Z""", re.S)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


class _TemplateError(Exception):
    pass


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            e = body[i + 1]
            if e == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6]):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            if e == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", body[i + 2 : i + 4]):
                out.append(chr(int(body[i + 2 : i + 4], 16)))
                i += 4
                continue
            out.append(_ESCAPES.get(e, e))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _evaluate(expr: str) -> str:
    """A `{{ expr }}` the parser can evaluate: literals only (anything else may throw in JS)."""
    m = _STRING.match(expr)
    if m:
        return _unescape(m.group(1) if m.group(1) is not None else m.group(2))
    word = expr.strip()
    if word in ("null", "undefined"):
        return ""
    if word in ("true", "false", "NaN", "Infinity"):
        return word
    if word and (word[0].isdigit() or word[0] == ".") and word.isascii():
        n = to_number(word)
        if n == n:  # not NaN
            return to_string(n)
    raise _TemplateError(expr)


def _template(value: str) -> str:
    """lodash `_.template(value)({})` with CHT's `{{ }}` interpolation; raw value on error."""
    if "{{" not in value and "<%" not in value:
        return value
    if "<%" in value:
        return value  # evaluate/escape blocks run arbitrary JS; treat as failing templates
    try:
        return _INTERPOLATE.sub(lambda m: _evaluate(m.group(1)), value)
    except _TemplateError:
        return value


def _find(value: Mapping[str, Any], locale: str) -> Any:
    translations = value.get("translations")
    if truthy(translations):
        items = (
            translations
            if isinstance(translations, list)
            else list(translations.values() if isinstance(translations, Mapping) else [])
        )
        for t in items:
            if isinstance(t, Mapping) and t.get("locale") == locale:
                return t.get("content")
        return UNDEFINED
    return value.get(locale, UNDEFINED)


def _get_message(value: Any, locale: str) -> Any:
    """CHT's `a || b || ...` chain: the first truthy candidate, else the last one's value."""
    if isinstance(value, list):
        value = {str(i): v for i, v in enumerate(value)}
    result: Any = UNDEFINED
    for candidate in (
        lambda: _find(value, locale),
        lambda: value.get("default", UNDEFINED),
        lambda: _find(value, "en"),
        lambda: _first_translation(value),
        lambda: next(iter(value.values()), UNDEFINED),
    ):
        result = candidate()
        if truthy(result):
            return result
    return result


def resolve_object(value: Any, locale: str) -> Any:
    """CHT `getMessage(value, locale) || value`."""
    if locale == "test":  # CHT's pseudo-locale: the English text wrapped in dashes
        return "-" + to_string(_get_message(value, "en")) + "-"
    result = _get_message(value, locale)
    return result if truthy(result) else value


def _first_translation(value: Mapping[str, Any]) -> Any:
    translations = value.get("translations")
    if isinstance(translations, list) and translations and isinstance(translations[0], Mapping):
        return translations[0].get("content", UNDEFINED)
    return UNDEFINED


def _lookup(tables: Tables | None, locale: str, key: str) -> Any:
    if not tables:
        return UNDEFINED
    table = tables.get(locale)
    if isinstance(table, Mapping):
        if key in table:
            return table[key]
        if key in _INHERITED:
            return _INHERITED[key]
    return UNDEFINED


def effective_locale(locale: Any, settings_locale: Any) -> str:
    """CHT `locale || settings.locale || 'en'`, used as a property key: a number or `true`
    selects the `"5"` / `"true"` entry. (An object locale is taken by CHT as a template
    context; here it is skipped like other falsy values.)"""
    for v in (locale, settings_locale):
        if isinstance(v, str | int | float) and truthy(v):  # bool is an int
            return v if isinstance(v, str) else to_string(v)
    return "en"


def translate(
    key: Any, locale: str | None, tables: Tables | None, settings_locale: str | None
) -> Any:
    """CHT `config.translate(key, locale)`."""
    loc = effective_locale(locale, settings_locale)
    if isinstance(key, Mapping | list):
        return resolve_object(key, loc)
    if key is UNDEFINED or key is None:
        return ""
    name = to_string(key)
    value: Any = UNDEFINED
    for candidate in (_lookup(tables, loc, name), _lookup(tables, "en", name)):
        if truthy(candidate):
            value = candidate
            break
    if value is UNDEFINED:
        value = key
    if isinstance(value, Mapping | list):
        return to_string(value)
    return _template(to_string(value))
