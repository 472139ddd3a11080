"""CHT's `config.translate` as the parser sees it. A string key is looked up in the
`{locale: {key: text}}` tables (then `en`, then the key itself) and the result is run through a
lodash template with `{{ }}` interpolation; a translation object resolves by locale, `default`,
`en`, the first `translations[]` entry, then its first value.

`render` is lodash `_.template(text)(context)` with CHT's `{{ }}` interpolation: when a template
names a variable the context lacks (a ReferenceError in JS) or holds `<% %>` code, CHT keeps the
template text unchanged. `load_translations` builds the `{locale: {key: text}}` tables from CHT's
translation documents (`messages-<code>`) the way CHT's API loads them at start-up."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from smsbridge.smsparser.js.numbers import NOT_LT, UNDEFINED, to_number, to_string, truthy
from smsbridge.smsparser.js.objects import js_key_order

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


_IDENTIFIER = re.compile(r"[A-Za-z_$][\w$]*")


def _member(value: Any, name: str) -> Any:
    """JS `value[name]` for the values a context holds (JSON values)."""
    if value is None or value is UNDEFINED:
        raise _TemplateError(name)  # TypeError: cannot read properties of undefined
    if isinstance(value, Mapping):
        if name in value:
            return value[name]
        return _INHERITED.get(name, UNDEFINED)
    if isinstance(value, list | str) and name == "length":
        return len(value)
    if isinstance(value, list) and name.isdigit():
        return value[int(name)] if int(name) < len(value) else UNDEFINED
    return UNDEFINED


def _lookup_path(expr: str, context: Any) -> str:
    """`{{ name }}` or `{{ a.b.c }}` read from the template's context (lodash runs the template
    `with (context)`): a first name the context lacks is a ReferenceError."""
    parts = [p.strip() for p in expr.strip().split(".")]
    if not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise _TemplateError(expr)
    first = parts[0]
    if isinstance(context, Mapping) and (first in context or first in _INHERITED):
        value = _member(context, first)
    elif isinstance(context, list) and first == "length":
        value = len(context)
    else:
        raise _TemplateError(expr)
    for name in parts[1:]:
        value = _member(value, name)
    return "" if value is None or value is UNDEFINED else to_string(value)


def _evaluate(expr: str, context: Any = None) -> str:
    """A `{{ expr }}` the parser can evaluate: literals, and names read from the context
    (anything else may throw in JS)."""
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
    return _lookup_path(expr, context)


def render(value: str, context: Any = None) -> str:
    """lodash `_.template(value)(context || {})` with CHT's `{{ }}` interpolation, as CHT's
    `config.translate` runs it: on any error the template text is returned unchanged."""
    if "{{" not in value and "<%" not in value:
        return value
    if "<%" in value:
        return value  # evaluate/escape blocks run arbitrary JS; treat as failing templates
    scope = context if isinstance(context, Mapping | list) else {}
    try:
        return _INTERPOLATE.sub(lambda m: _evaluate(m.group(1), scope), value)
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
    selects the `"5"` / `"true"` entry. (An object locale is taken by CHT as the template
    context and the settings locale used instead: see `translate`.)"""
    for v in (locale, settings_locale):
        if isinstance(v, str | int | float) and truthy(v):  # bool is an int
            return v if isinstance(v, str) else to_string(v)
    return "en"


def translate(
    key: Any,
    locale: Any,
    tables: Tables | None,
    settings_locale: Any,
    context: Any = None,
) -> Any:
    """CHT `config.translate(key, locale, context)`. A locale that is an object (or array) is
    the context instead, and the locale is then the settings locale."""
    if isinstance(locale, Mapping | list):
        context, locale = locale, None
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
    return render(to_string(value), context)


def error_message(
    code: str,
    default: str,
    locale: Any,
    tables: Tables | None,
    settings_locale: Any,
    context: Any = None,
) -> str:
    """The text CHT stores for an error `code`: its translation rendered with `context` as
    `translate` renders it (a template naming what the context lacks is kept unchanged), or,
    when the deployment has no text for the code, CHT's English `default` rendered the same."""
    text = translate(code, locale, tables, settings_locale, context)
    if text == code:
        text = render(default, context)
    return to_string(text)


_KEY_REFERENCE = re.compile(r"\$\{([^}\r\n]*)\}")


def _resolve_references(values: dict[str, Any]) -> dict[str, Any]:
    """CHT's translation-utils `loadTranslations`: in key order, `${other}` in a string becomes
    the other key's value when that is a non-empty string or a non-zero number (values already
    resolved earlier in the order count as resolved)."""
    for key in js_key_order(list(values)):
        text = values[key]
        if isinstance(text, str):

            def fill(m: re.Match[str]) -> str:
                other = values.get(m.group(1), UNDEFINED)
                ok = isinstance(other, str) or (
                    isinstance(other, int | float) and not isinstance(other, bool)
                )
                return to_string(other) if ok and truthy(other) else m.group(0)

            values[key] = _KEY_REFERENCE.sub(fill, text)
    return values


def load_translations(docs: Any) -> dict[str, dict[str, Any]]:
    """The `{locale: {key: text}}` tables CHT's API builds from its translation documents: each
    doc of type `translations` with a `code` and an object `generic` (or, older, `values`);
    `custom` entries override `generic` ones; `${key}` references resolved; a later doc with
    the same code replaces an earlier one."""
    tables: dict[str, dict[str, Any]] = {}
    for doc in docs if isinstance(docs, list) else []:
        if not isinstance(doc, Mapping) or doc.get("type") != "translations":
            continue
        code = doc.get("code")
        if not truthy(code):
            continue
        generic, values = doc.get("generic"), doc.get("values")
        if not isinstance(generic, Mapping | list) and not isinstance(values, Mapping | list):
            continue
        if truthy(generic):
            merged = _as_object(generic)
            custom = doc.get("custom")
            if truthy(custom):
                merged.update(_as_object(custom))
        elif isinstance(values, Mapping | list):
            merged = _as_object(values)
        else:
            merged = {}
        tables[to_string(code)] = _resolve_references(merged)
    return tables


def _as_object(value: Any) -> dict[str, Any]:
    """A JSON value as the plain object `Object.assign` / `Object.keys` would see."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, str):
        return {str(i): c for i, c in enumerate(value)}
    return {}
